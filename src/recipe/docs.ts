import type * as z from "zod";
import { IMAGE_ROLES } from "../images/roles.ts";
import { documented } from "./schema.ts";
import { docMeta, objectOf, typeLabel } from "./shapes.ts";

/**
 * The tables of recipes/README.md, written from the schema: each sits between
 * `<!-- recipe-docs:NAME ... -->` and `<!-- /recipe-docs:NAME -->`. `npm run docs` rewrites
 * them; tests/unit/recipe-docs.test.ts fails when the README and the schema disagree.
 */

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

function row(cells: string[]): string {
  return `| ${cells.map(cell).join(" | ")} |`;
}

/** Key, required, type and meaning of every field of one object of the format. */
export function fieldTable(name: string, schema: z.ZodType): string {
  const obj = objectOf(schema);
  if (!obj) throw new Error(`recipe docs: "${name}" is not an object schema`);
  const rows = Object.entries(obj.shape).map(([key, field]) => {
    const doc = docMeta.get(field)?.doc;
    if (!doc) throw new Error(`recipe docs: field ${name}.${key} has no doc text in src/recipe/schema.ts`);
    const required = field.safeParse(undefined).success ? "no" : "yes";
    return row([`\`${key}\``, required, typeLabel(field), doc]);
  });
  return [row(["Key", "Required", "Type", "Meaning"]), "| --- | --- | --- | --- |", ...rows].join("\n");
}

/** The image roles a node's `image` names, with the defaults its container gets. */
export function roleTable(): string {
  const list = (xs: readonly string[]) => (xs.length ? xs.map((x) => `\`${x}\``).join(", ") : "none");
  const rows = Object.entries(IMAGE_ROLES).map(([role, r]) => {
    const sysctls = Object.entries(r.sysctls).map(([k, v]) => `${k}=${v}`);
    return row([`\`${role}\``, r.about, list(r.caps), list(r.devices), list(sysctls)]);
  });
  return [row(["Image", "What it is", "`caps`", "`devices`", "`sysctls`"]), "| --- | --- | --- | --- | --- |", ...rows].join("\n");
}

/** Every generated table by its marker name; `schemas` is a parameter so a test can feed a changed schema. */
export function generatedTables(schemas: Record<string, z.ZodType> = documented): Record<string, string> {
  const tables: Record<string, string> = {};
  for (const [name, schema] of Object.entries(schemas)) tables[name] = fieldTable(name, schema);
  tables.roles = roleTable();
  return tables;
}

/** Opening marker, the table (with its last newline), closing marker. */
const BLOCK = /(<!-- recipe-docs:([a-z-]+)[^>]*-->\n)([\s\S]*?)(<!-- \/recipe-docs:\2 -->)/g;

/** The README with every marked table rewritten; a table without markers, or markers without a table, is an error. */
export function updateReadme(text: string, tables = generatedTables()): string {
  const seen = new Set<string>();
  const out = text.replace(BLOCK, (_, open: string, name: string, _old: string, close: string) => {
    const table = tables[name];
    if (table === undefined) throw new Error(`recipes/README.md marks a table "${name}" the schema does not have`);
    seen.add(name);
    return `${open}${table}\n${close}`;
  });
  const missing = Object.keys(tables).filter((n) => !seen.has(n));
  if (missing.length) throw new Error(`recipes/README.md has no markers for the table(s) ${missing.join(", ")}`);
  return out;
}

/** The tables whose text in the README differs from the schema's. */
export function readmeDrift(text: string, tables = generatedTables()): string[] {
  const inReadme = new Map([...text.matchAll(BLOCK)].map((m) => [m[2]!, m[3]!]));
  return Object.keys(tables).filter((n) => inReadme.get(n) !== `${tables[n]}\n`);
}
