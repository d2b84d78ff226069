import {
  type Document,
  isAlias,
  isMap,
  isNode,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  type Pair,
  parseDocument,
  visit,
} from "yaml";
import type * as z from "zod";

/**
 * YAML with line numbers: parsing, and turning a schema's complaints into
 * `recipes/x/recipe.yaml:12: nodes.home.networks: expected a map`.
 */
export class SchemaError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
  }
}

export interface Parsed {
  doc: Document;
  lines: LineCounter;
  value: unknown;
}

type Path = readonly PropertyKey[];

/** Parse YAML, reporting syntax errors as file:line: message. */
export function parseYaml(text: string, file: string): Parsed {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, merge: true });
  if (doc.errors.length) {
    throw new SchemaError(doc.errors.map((e) => `${file}:${lines.linePos(e.pos[0]).line}: ${e.message.split("\n")[0]}`));
  }
  const badMerges = mergeProblems(doc, lines, file);
  if (badMerges.length) throw new SchemaError(badMerges);
  return { doc, lines, value: doc.toJS() };
}

const isMergeKey = (p: Pair): boolean => isScalar(p.key) && ["<<", "Symbol(<<)"].includes(String(p.key.value));

const resolved = (doc: Document, n: unknown): unknown => (isAlias(n) ? n.resolve(doc) : n);
const lineOf = (lines: LineCounter, n: unknown): number => lines.linePos((isNode(n) && n.range?.[0]) || 0).line;

/** What a `<<` merges: the map(s) it names, or undefined when it names something else. */
function mergeSources(p: Pair, doc: Document): Node[] | undefined {
  const v = resolved(doc, p.value);
  if (isMap(v)) return [v];
  if (!isSeq(v)) return undefined;
  const maps = v.items.map((i) => resolved(doc, i)).filter((i) => isMap(i));
  return maps.length === v.items.length ? maps : undefined;
}

/** A `<<` must merge maps; the YAML library would throw without a line. */
function mergeProblems(doc: Document, lines: LineCounter, file: string): string[] {
  const out: string[] = [];
  visit(doc, {
    Pair(_, pair, ancestors) {
      if (!isMergeKey(pair) || mergeSources(pair, doc)) return;
      const where = dotted(pathOf(ancestors));
      out.push(`${file}:${lineOf(lines, pair.value)}: ${where}: << must merge a map (an alias like *peer)`);
    },
  });
  return out;
}

/** The document path of a visitor's ancestors: keys of pairs, indices in lists. */
function pathOf(ancestors: readonly unknown[]): PropertyKey[] {
  const path: PropertyKey[] = [];
  ancestors.forEach((a, i) => {
    const child = ancestors[i + 1];
    if (child === undefined) return;
    if (isSeq(a)) path.push(a.items.indexOf(child));
    else if (isPair(a) && isScalar(a.key)) path.push(String(a.key.value));
  });
  return path;
}

/** `nodes.a.files[0].path`, as shape errors have always written it ("(top)" for the document). */
export function dotted(path: Path): string {
  const text = path.reduce<string>((s, p) => (typeof p === "number" ? `${s}[${p}]` : s ? `${s}.${String(p)}` : String(p)), "");
  return text || "(top)";
}

/** The pair for `key` in a map; `merged` when it came through `<<: *peer` (shown where the anchored map wrote it). */
function findPair(doc: Document, map: unknown, key: string): { pair: Pair; merged: boolean } | undefined {
  if (!isMap(map)) return undefined;
  const own = map.items.find((p) => !isMergeKey(p) && isScalar(p.key) && String(p.key.value) === key);
  if (own) return { pair: own, merged: false };
  for (const p of map.items.filter(isMergeKey)) {
    for (const src of mergeSources(p, doc) ?? []) {
      const found = findPair(doc, src, key);
      if (found) return { pair: found.pair, merged: true };
    }
  }
  return undefined;
}

/** The key and value nodes at a path, through aliases and merges. */
function locate(doc: Document, path: Path): { key?: unknown; value?: unknown; merged: boolean } | undefined {
  let node: unknown = doc.contents;
  let key: unknown;
  let merged = false;
  for (const seg of path) {
    node = resolved(doc, node);
    if (isSeq(node) && typeof seg === "number") {
      key = undefined;
      node = node.items[seg];
    } else {
      const found = findPair(doc, node, String(seg));
      if (!found) return undefined;
      key = found.pair.key;
      node = found.pair.value;
      merged ||= found.merged;
    }
  }
  return { key, value: node ?? undefined, merged };
}

/** Whether a path's value came (partly) through a `<<` merge. */
function inherited(parsed: Parsed, path: Path): boolean {
  return locate(parsed.doc, path)?.merged ?? false;
}

/** Line of a path like ["nodes","home","networks"]; the nearest ancestor's when it does not exist. */
export function lineAt(parsed: Parsed, path: Path, of: "key" | "value" = "value"): number {
  for (let p = path; ; p = p.slice(0, -1)) {
    const found = locate(parsed.doc, p);
    const node = of === "key" && p === path ? (found?.key ?? found?.value) : (found?.value ?? found?.key);
    if ((isNode(node) && node.range) || !p.length) return lineOf(parsed.lines, node);
  }
}

interface Problem {
  line: number;
  text: string;
  /** Missing fields are listed after the other problems of their line, as the map's own walk found them. */
  last: boolean;
  /** Reported through a merge: a repeat of the problem where the anchored map wrote it. */
  inherited: boolean;
}

/** The field's value is absent (zod reports it as a wrong type or value of `undefined`). */
const missing = (issue: z.core.$ZodIssue): boolean =>
  (issue.code === "invalid_type" || issue.code === "invalid_value") && issue.input === undefined && issue.path.length > 0;

/** One schema issue as file:line: path: message problems (unknown keys give one each). */
function explain(issue: z.core.$ZodIssue, parsed: Parsed, file: string): Problem[] {
  const at = (path: Path, shown: Path, message: string, of: "key" | "value" = "value"): Problem => {
    const line = lineAt(parsed, path, of);
    const last = missing(issue);
    return { line, text: `${file}:${line}: ${dotted(shown)}: ${message}`, last, inherited: inherited(parsed, path) };
  };
  if (issue.code === "unrecognized_keys") return issue.keys.map((k) => at([...issue.path, k], [...issue.path, k], issue.message, "key"));
  if (issue.code === "invalid_key") return [at(issue.path, issue.path.slice(0, -1), issue.issues[0]?.message ?? issue.message, "key")];
  if (missing(issue)) {
    const parent = issue.path.slice(0, -1);
    return [at(parent, parent, `missing required field "${String(issue.path.at(-1))}"`)];
  }
  return [at(issue.path, issue.path, issue.message)];
}

/** The schema's issues in document order, as the loader shows them. */
export function describeIssues(issues: readonly z.core.$ZodIssue[], parsed: Parsed, file: string): string[] {
  const problems = issues.flatMap((i) => explain(i, parsed, file));
  const own = new Set(problems.filter((p) => !p.inherited).map((p) => p.text.replace(/: [^:]*: /, ": ")));
  return problems
    .filter((p) => !(p.inherited && own.has(p.text.replace(/: [^:]*: /, ": "))))
    .sort((a, b) => a.line - b.line || Number(a.last) - Number(b.last))
    .map((p) => p.text);
}
