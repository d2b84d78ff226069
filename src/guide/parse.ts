import { UserError } from "../errors.ts";

/**
 * A lab guide (labs/recipe-N.md) read as a script. A fenced block whose info string carries
 * `{...}` after the language is a step; GitHub shows only the language, so the marks never
 * show on the rendered page. The grammar is documented in labs/README.md.
 */

/** A command block the reader types. */
export interface GuideStep {
  /** 1-based line of the opening fence. */
  line: number;
  /** "host" (pane 0 / a shell in the repository root) or node names, run in that order. */
  on: string[];
  /** The text as the guide shows it. */
  text: string;
  /** Expected output (the `output` block after it), with its own line. */
  output?: { text: string; line: number };
  /** Exit code expected; default 0. `fails` means any non-zero code. */
  exit: number | "nonzero";
  /** The block holds its pane until the next step in that pane (the reader's Ctrl-C). */
  waits: boolean;
  /** A waiting step that ends by itself (a `timeout`) within this many seconds: the next step in its pane waits for the end instead of pressing Ctrl-C. */
  ends?: number;
  /** A waiting step is ready once its output contains this text. */
  ready?: string;
  /** A line the reader types into a waiting step. */
  type?: string;
  /** The block is an editor session or a file to write: the runner applies this exercise's reference solution instead. */
  solve?: string;
  /** The block is not run, and why (the lab's start and stop are the runner's; an alternative path). */
  skip?: string;
  /** The reader may have to wait: run it again until it prints what the guide shows, for up to this many seconds. */
  within?: number;
  /** The reader copies a value from what the block prints into later blocks: the first word of its last line replaces this word in every block after it. */
  keep?: string;
}

export interface Guide {
  file: string;
  steps: GuideStep[];
}

const FENCE = /^(`{3,}|~{3,})\s*([\w-]*)\s*(\{.*\})?\s*$/;
const KNOWN = new Set(["on", "output", "fails", "exit", "waits", "ends", "ready", "type", "solve", "skip", "within", "keep"]);

/** `{on=peer-1 ready="listening on" waits}` as a map; a bare word is `true`. */
export function parseAttrs(raw: string, where: string): Record<string, string | true> {
  const out: Record<string, string | true> = {};
  const body = raw.slice(1, -1).trim();
  const re = /([\w-]+)(?:=("([^"]*)"|[^\s"]+))?\s*/y;
  let at = 0;
  while (at < body.length) {
    re.lastIndex = at;
    const m = re.exec(body);
    if (!m) throw new UserError(`${where}: cannot read the block's marks "${raw}" at "${body.slice(at)}".`);
    const key = m[1]!;
    if (!KNOWN.has(key)) throw new UserError(`${where}: unknown mark "${key}" (known: ${[...KNOWN].join(", ")}).`);
    out[key] = m[3] ?? m[2] ?? true;
    at = re.lastIndex;
  }
  return out;
}

function str(v: string | true | undefined, key: string, where: string): string | undefined {
  if (v === true) throw new UserError(`${where}: mark "${key}" needs a value (${key}=...).`);
  return v;
}

function stepOf(attrs: Record<string, string | true>, text: string, line: number, where: string): GuideStep {
  const on = str(attrs.on, "on", where);
  if (!on) throw new UserError(`${where}: a marked block needs on=host or on=<node>[,<node>...].`);
  const exit = attrs.fails ? "nonzero" : attrs.exit ? Number(str(attrs.exit, "exit", where)) : 0;
  if (Number.isNaN(exit)) throw new UserError(`${where}: exit= needs a number.`);
  const ends = attrs.ends === undefined ? undefined : Number(str(attrs.ends, "ends", where));
  if (Number.isNaN(ends)) throw new UserError(`${where}: ends= needs a number of seconds.`);
  return {
    line,
    on: on.split(","),
    text,
    exit,
    waits: attrs.waits === true || ends !== undefined,
    ends,
    ready: str(attrs.ready, "ready", where),
    type: str(attrs.type, "type", where),
    solve: str(attrs.solve, "solve", where),
    skip: str(attrs.skip, "skip", where),
    within: attrs.within ? Number(str(attrs.within, "within", where)) : undefined,
    keep: str(attrs.keep, "keep", where),
  };
}

/** The steps of a guide, in the reader's order. Throws a UserError naming the line on a bad mark. */
export function parseGuide(markdown: string, file: string): Guide {
  const lines = markdown.split("\n");
  const steps: GuideStep[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const fence = open[1]!;
    const body: string[] = [];
    for (i++; i < lines.length && !lines[i]!.startsWith(fence); i++) body.push(lines[i]!);
    if (i >= lines.length) throw new UserError(`${file}:${start + 1}: the block is never closed.`);
    if (!open[3]) continue;
    const where = `${file}:${start + 1}`;
    const attrs = parseAttrs(open[3], where);
    const text = body.join("\n");
    if (attrs.output) {
      // `{output on=home}`: the output of home's latest block, shown after blocks in other panes.
      const on = str(attrs.on, "on", where);
      const prev = on ? [...steps].reverse().find((s) => s.on.includes(on)) : steps.at(-1);
      if (!prev || prev.output)
        throw new UserError(`${where}: an output block must follow a marked command block${on ? ` on ${on}` : ""}.`);
      prev.output = { text, line: start + 1 };
    } else steps.push(stepOf(attrs, text, start + 1, where));
  }
  return { file, steps };
}

/** Opening fences of shell blocks without marks: a guide that is a test has none. */
export function unmarkedShellBlocks(markdown: string): number[] {
  const out: number[] = [];
  let inside = "";
  markdown.split("\n").forEach((l, i) => {
    const m = FENCE.exec(l);
    if (!m) return;
    if (inside) {
      if (l.startsWith(inside) && !m[2] && !m[3]) inside = "";
      return;
    }
    inside = m[1]!;
    if (/^(bash|sh|shell|console)$/.test(m[2]!) && !m[3]) out.push(i + 1);
  });
  return out;
}
