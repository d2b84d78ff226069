import * as z from "zod";

/**
 * The vocabulary schema.ts writes the recipe format in: zod schemas whose own error texts are
 * the loader's ("expected a list", "unknown field (expected one of ...)"), tagged with what the
 * README tables show. yaml.ts adds file, line and path to those texts.
 */

/** What recipes/README.md shows for a schema: its type label, and for a field its meaning. */
export interface DocMeta {
  type?: string;
  doc?: string;
}

/** Our own registry, not zod's `.describe()`: that clones the schema, and the clone would lose the type label. */
export const docMeta = z.registry<DocMeta>();

function tag<T extends z.ZodType>(schema: T, meta: DocMeta): T {
  docMeta.add(schema, { ...docMeta.get(schema), ...meta });
  return schema;
}

/** Name the type of a schema built outside this vocabulary (e.g. a `.partial()`). */
export const typed = <T extends z.ZodType>(schema: T, type: string): T => tag(schema, { type });

/** A field of an object, with the sentence the README's table shows for it. */
export function field<T extends z.ZodType>(schema: T, doc: string): T {
  if (docMeta.get(schema)?.doc) throw new Error(`schema instance documented twice: "${doc}"`);
  return tag(schema, { doc });
}

/** The README's type label: wrappers (optional, default, transforms) show their inner schema's. */
export function typeLabel(schema: z.core.$ZodType): string {
  const own = docMeta.get(schema)?.type;
  if (own) return own;
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodDefault) return typeLabel(schema.unwrap());
  if (schema instanceof z.ZodPipe) return typeLabel(schema.in);
  return "?";
}

export const NAME = /^[a-z0-9][a-z0-9-]*$/;
export const NAME_TEXT = "lowercase letters, digits and dashes";

/** YAML reads `stdoutContains: 200` as a number; a string field takes it as the text written. */
const asText = (v: unknown) => (typeof v === "number" ? String(v) : v);

export function str(pattern?: RegExp, text?: string, type = "string") {
  const base = z.string({ error: "expected a string" });
  const checked = pattern ? base.regex(pattern, { error: (iss) => `expected ${text}, got "${String(iss.input)}"` }) : base;
  return tag(z.preprocess(asText, checked), { type });
}

export const name = () => str(NAME, NAME_TEXT, "name");

export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  const error = (iss: { input?: unknown }) =>
    typeof iss.input === "string" ? `expected one of ${values.join(", ")}, got "${iss.input}"` : "expected a string";
  return tag(z.enum(values, { error }), { type: `one of ${values.map((v) => `\`${v}\``).join(", ")}` });
}

export const num = () => tag(z.number({ error: "expected a number" }), { type: "number" });
export const bool = () => tag(z.boolean({ error: "expected true or false" }), { type: "boolean" });

export function list<T extends z.ZodType>(of: T, type = `list of ${typeLabel(of)}s`) {
  return tag(z.array(of, { error: "expected a list" }), { type });
}

/** Exactly two of a kind, e.g. the two ends of a link (an array checked for length: a tuple would report a missing second item as a missing field). */
export function pair<T extends z.ZodType>(of: T, plural: string) {
  const two = z
    .array(of, { error: "expected a list" })
    .refine((a) => a.length === 2, { error: `expected two ${plural}` })
    .transform((a): [z.output<T>, z.output<T>] => [a[0]!, a[1]!]);
  return tag(two, { type: `two ${plural}` });
}

/** A map whose keys are names (`home-router`, not `home_router`). */
export function map<T extends z.ZodType>(values: T) {
  const key = z.string().regex(NAME, { error: (iss) => `key "${String(iss.input)}" should be ${NAME_TEXT}` });
  return tag(z.record(key, values, { error: "expected a map" }), { type: `map name → ${typeLabel(values)}` });
}

/** sysctls, env, vars: names to strings, numbers or booleans, all used as text. */
export function scalars() {
  const scalar = z.union([z.string(), z.number(), z.boolean()], { error: "expected a string, number or boolean" }).transform(String);
  return tag(z.record(z.string(), scalar, { error: "expected a map of names to values" }), { type: "map name → scalar" });
}

/** A map with known fields; any other key is an error that lists the known ones. */
export function obj<T extends z.ZodRawShape>(type: string, shape: T) {
  const known = Object.keys(shape).join(", ");
  const error = (iss: { code?: string }) =>
    iss.code === "unrecognized_keys" ? `unknown field (expected one of ${known})` : "expected a map";
  return tag(z.strictObject(shape, { error }), { type });
}

/** The object schema behind transforms, for the README tables. */
export function objectOf(schema: z.core.$ZodType): z.ZodObject | undefined {
  if (schema instanceof z.ZodObject) return schema;
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodDefault) return objectOf(schema.unwrap());
  if (schema instanceof z.ZodPipe) return objectOf(schema.in);
  return undefined;
}
