import { type Document, isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";

/**
 * A small schema checker that walks the YAML syntax tree, so every complaint names the file,
 * the line and what was expected: `recipes/x/recipe.yaml:12: nodes.home.networks: expected a map`.
 */
export class SchemaError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
  }
}

type Where = { file: string; lines: LineCounter; doc: Document };

export type Shape =
  | { kind: "string"; pattern?: RegExp; patternText?: string; oneOf?: string[] }
  | { kind: "number" }
  | { kind: "boolean" }
  | { kind: "list"; of: Shape }
  | { kind: "map"; values: Shape; keys?: RegExp; keysText?: string }
  | { kind: "object"; fields: Record<string, Shape>; required?: string[] }
  | { kind: "stringOrList" }
  | { kind: "scalarMap" };

export const S = {
  str: (pattern?: RegExp, patternText?: string): Shape => ({ kind: "string", pattern, patternText }),
  oneOf: (...oneOf: string[]): Shape => ({ kind: "string", oneOf }),
  num: (): Shape => ({ kind: "number" }),
  bool: (): Shape => ({ kind: "boolean" }),
  list: (of: Shape): Shape => ({ kind: "list", of }),
  map: (values: Shape, keys?: RegExp, keysText?: string): Shape => ({ kind: "map", values, keys, keysText }),
  obj: (fields: Record<string, Shape>, required: string[] = []): Shape => ({
    kind: "object",
    fields,
    required,
  }),
  /** A map from names to strings/numbers/booleans (sysctls, env, vars). */
  scalars: (): Shape => ({ kind: "scalarMap" }),
};

function lineOf(node: Node | null | undefined, where: Where): number {
  const offset = node?.range?.[0] ?? 0;
  return where.lines.linePos(offset).line;
}

function check(node: Node | null | undefined, shape: Shape, path: string, where: Where, out: string[]): void {
  const at = (n: Node | null | undefined, msg: string): void =>
    void out.push(`${where.file}:${lineOf(n, where)}: ${path || "(top)"}: ${msg}`);
  switch (shape.kind) {
    case "string": {
      if (!isScalar(node) || (typeof node.value !== "string" && typeof node.value !== "number")) return at(node, "expected a string");
      const v = String(node.value);
      if (shape.oneOf && !shape.oneOf.includes(v)) return at(node, `expected one of ${shape.oneOf.join(", ")}, got "${v}"`);
      if (shape.pattern && !shape.pattern.test(v)) return at(node, `expected ${shape.patternText ?? shape.pattern}, got "${v}"`);
      return;
    }
    case "number":
      if (!isScalar(node) || typeof node.value !== "number") at(node, "expected a number");
      return;
    case "boolean":
      if (!isScalar(node) || typeof node.value !== "boolean") at(node, "expected true or false");
      return;
    case "stringOrList":
      if (isScalar(node) && typeof node.value === "string") return;
      if (isSeq(node) && node.items.every((i) => isScalar(i) && typeof i.value === "string")) return;
      return at(node, "expected a string or a list of strings");
    case "list":
      if (!isSeq(node)) return at(node, "expected a list");
      node.items.forEach((item, i) => check(item as Node, shape.of, `${path}[${i}]`, where, out));
      return;
    case "scalarMap":
      if (!isMap(node)) return at(node, "expected a map of names to values");
      for (const pair of node.items) {
        if (!isScalar(pair.value) || pair.value.value === null || typeof pair.value.value === "object") {
          out.push(
            `${where.file}:${lineOf(pair.value as Node, where)}: ${path}.${String((pair.key as { value?: unknown })?.value)}: expected a string, number or boolean`,
          );
        }
      }
      return;
    case "map":
      if (!isMap(node)) return at(node, "expected a map");
      for (const pair of node.items) {
        const key = String((pair.key as { value?: unknown })?.value);
        if (shape.keys && !shape.keys.test(key)) {
          out.push(`${where.file}:${lineOf(pair.key as Node, where)}: ${path}: key "${key}" should be ${shape.keysText ?? shape.keys}`);
        }
        check(pair.value as Node, shape.values, `${path}.${key}`, where, out);
      }
      return;
    case "object": {
      if (!isMap(node)) return at(node, "expected a map");
      const seen = new Set<string>();
      for (const pair of node.items) {
        const key = String((pair.key as { value?: unknown })?.value);
        if (key === "<<" || key === "Symbol(<<)") {
          // YAML merge key (`<<: *anchor`): the anchored map was checked where it was written.
          const src = isAlias(pair.value) ? pair.value.resolve(where.doc) : pair.value;
          if (isMap(src)) for (const p of src.items) seen.add(String((p.key as { value?: unknown })?.value));
          else at(pair.value as Node, "<< must merge a map (an alias like *peer)");
          continue;
        }
        seen.add(key);
        const field = shape.fields[key];
        if (!field) {
          out.push(
            `${where.file}:${lineOf(pair.key as Node, where)}: ${path ? `${path}.` : ""}${key}: unknown field (expected one of ${Object.keys(shape.fields).join(", ")})`,
          );
          continue;
        }
        check(pair.value as Node, field, path ? `${path}.${key}` : key, where, out);
      }
      for (const r of shape.required ?? []) if (!seen.has(r)) at(node, `missing required field "${r}"`);
      return;
    }
  }
}

export interface Parsed {
  doc: Document;
  lines: LineCounter;
  value: unknown;
}

/** Parse YAML, reporting syntax errors as file:line: message. */
export function parseYaml(text: string, file: string): Parsed {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, merge: true });
  if (doc.errors.length) {
    throw new SchemaError(doc.errors.map((e) => `${file}:${lines.linePos(e.pos[0]).line}: ${e.message.split("\n")[0]}`));
  }
  return { doc, lines, value: doc.toJS() };
}

export function validate(parsed: Parsed, shape: Shape, file: string): void {
  const problems: string[] = [];
  check(parsed.doc.contents as Node, shape, "", { file, lines: parsed.lines, doc: parsed.doc }, problems);
  if (problems.length) throw new SchemaError(problems);
}

/** Line of a path like ["nodes","home","networks"] in the document, for semantic errors. */
export function lineAt(parsed: Parsed, path: (string | number)[]): number {
  let node = parsed.doc.getIn(path, true) as Node | undefined;
  for (let p = path.slice(); !node && p.length; p = p.slice(0, -1)) node = parsed.doc.getIn(p.slice(0, -1), true) as Node | undefined;
  return parsed.lines.linePos(node?.range?.[0] ?? 0).line;
}
