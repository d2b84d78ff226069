import { outputMatches } from "./match.ts";
import type { Guide, GuideStep } from "./parse.ts";

export interface Ran {
  exitCode: number;
  /** stdout and stderr as the pane shows them, interleaved. */
  output: string;
}

/** A command holding its pane (a listener, a capture) until the reader presses Ctrl-C. */
export interface Held {
  output(): Promise<string>;
  /** Ctrl-C: signal it, wait until it ends, and give what it printed. */
  interrupt(): Promise<string>;
  /** What it printed once it has ended by itself, or undefined if it still runs after `timeoutMs`. */
  ended(timeoutMs: number): Promise<string | undefined>;
}

/** Where a guide's steps run: a lab of the guide's recipe, with its own names. */
export interface GuideTarget {
  /** The guide's text (written for the default lab) with this lab's names and addresses. */
  translate(text: string, on: string): string;
  run(on: string, script: string): Promise<Ran>;
  hold(on: string, script: string, typed?: string): Promise<Held>;
  /** The exercise's reference solution, in place of an editor session. */
  solve(exercise: string): Promise<void>;
}

export class GuideFailure extends Error {}

export interface RunOptions {
  /** One line per step, as it runs (what ran, what was replaced or skipped). */
  log?: (line: string) => void;
  /** How long a waiting step may take to print its `ready` text. */
  readyTimeoutMs?: number;
}

function firstLine(step: GuideStep): string {
  const l = step.text.split("\n")[0] ?? "";
  return step.text.includes("\n") ? `${l} …` : l;
}

function heldNote(step: GuideStep): string {
  if (step.ends !== undefined) return ` (holds its pane until it ends, within ${step.ends} s)`;
  return step.waits ? " (held until Ctrl-C)" : "";
}

function failure(guide: Guide, step: GuideStep, on: string, what: string, got?: string): GuideFailure {
  const head = `${guide.file}:${step.line}: the block on ${on} \`${firstLine(step)}\` ${what}`;
  return new GuideFailure(got === undefined ? head : `${head}\n--- it printed ---\n${got.trimEnd()}\n---`);
}

function checkOutput(guide: Guide, step: GuideStep, on: string, got: string, target: GuideTarget): void {
  if (!step.output) return;
  const expected = target.translate(step.output.text, on);
  if (!outputMatches(expected, got))
    throw failure(guide, step, on, `does not print what the guide shows at line ${step.output.line}:\n${expected}`, got);
}

function checkExit(guide: Guide, step: GuideStep, on: string, r: Ran): void {
  const ok = step.exit === "nonzero" ? r.exitCode !== 0 : r.exitCode === step.exit;
  if (!ok)
    throw failure(
      guide,
      step,
      on,
      `exited ${r.exitCode}, the guide expects ${step.exit === "nonzero" ? "a failure" : step.exit}`,
      r.output,
    );
}

/** The value a reader copies from a block's output: the first word of its last line (a key, a table row's ID). */
export function keptValue(output: string): string | undefined {
  const last = output.replace(/\r/g, "").trimEnd().split("\n").at(-1) ?? "";
  return last.trim().split(/\s+/)[0] || undefined;
}

/** The guide's stand-in words (KEY, ID) replaced by the values kept so far. */
function withKept(script: string, kept: Map<string, string>): string {
  let out = script;
  for (const [word, value] of kept) out = out.replace(new RegExp(`\\b${word}\\b`, "g"), () => value);
  return out;
}

/** Run a step; with `within`, again (as a reader waiting a few seconds would) until it prints what the guide shows. */
async function runUntilAsShown(guide: Guide, step: GuideStep, on: string, script: string, target: GuideTarget): Promise<string> {
  const deadline = Date.now() + (step.within ?? 0) * 1000;
  while (true) {
    const r = await target.run(on, script);
    try {
      checkExit(guide, step, on, r);
      checkOutput(guide, step, on, r.output, target);
      return r.output;
    } catch (err) {
      if (Date.now() >= deadline) throw err;
    }
    await new Promise((res) => setTimeout(res, 500));
  }
}

async function waitReady(guide: Guide, step: GuideStep, on: string, held: Held, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let seen = "";
  while (Date.now() < deadline) {
    seen = await held.output();
    if (seen.includes(step.ready ?? "")) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw failure(guide, step, on, `never printed "${step.ready}" within ${timeoutMs} ms`, seen);
}

/**
 * Run a guide's steps in the reader's order against a target. A waiting step holds its pane:
 * the next step in that pane (or the guide's end) first presses Ctrl-C, and then its output is
 * compared. Throws a GuideFailure naming the guide, the line and the block.
 */
export async function runGuide(guide: Guide, target: GuideTarget, opts: RunOptions = {}): Promise<void> {
  const log = opts.log ?? (() => {});
  const held = new Map<string, { step: GuideStep; held: Held }>();
  const solved = new Set<string>();
  const kept = new Map<string, string>();
  const release = async (on: string) => {
    const h = held.get(on);
    if (!h) return;
    held.delete(on);
    if (h.step.ends === undefined) return checkOutput(guide, h.step, on, await h.held.interrupt(), target);
    // The reader waits for the prompt to come back, as the guide says, rather than pressing Ctrl-C.
    const out = await h.held.ended(h.step.ends * 1000);
    if (out === undefined) throw failure(guide, h.step, on, `did not end by itself within ${h.step.ends} s`, await h.held.interrupt());
    checkOutput(guide, h.step, on, out, target);
  };
  try {
    for (const step of guide.steps) {
      const where = `${guide.file}:${step.line} [${step.on.join(",")}]`;
      if (step.skip) {
        log(`${where} skipped: ${step.skip}`);
        continue;
      }
      if (step.solve) {
        if (!solved.has(step.solve)) await target.solve(step.solve);
        solved.add(step.solve);
        log(`${where} replaced by the reference solution of "${step.solve}"`);
        continue;
      }
      for (const on of step.on) {
        await release(on);
        const script = withKept(target.translate(step.text, on), kept);
        log(`${guide.file}:${step.line} [${on}] ${firstLine(step)}${heldNote(step)}`);
        if (step.waits) {
          const h = await target.hold(on, script, step.type);
          held.set(on, { step, held: h });
          if (step.ready) await waitReady(guide, step, on, h, opts.readyTimeoutMs ?? 15_000);
          continue;
        }
        const out = await runUntilAsShown(guide, step, on, script, target);
        if (step.keep) {
          const value = keptValue(out);
          if (!value) throw failure(guide, step, on, `printed nothing to keep as ${step.keep}`, out);
          kept.set(step.keep, value);
          log(`${where} keeps its output's ${step.keep} for the blocks after it`);
        }
      }
    }
    // The reader stops what still runs, last started first (a client before its server).
    for (const on of [...held.keys()].reverse()) await release(on);
  } finally {
    for (const h of held.values()) await h.held.interrupt().catch(() => "");
  }
}
