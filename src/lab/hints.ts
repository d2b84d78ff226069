import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderLoose } from "../recipe/template.ts";
import type { Recipe } from "../recipe/types.ts";
import { type ActionContext, checkExercise } from "./actions.ts";
import { type LabPlan, labStateDir, scopeOf } from "./plan.ts";

type Exercise = Recipe["exercises"][number];

/** How many hints each exercise has shown in this lab (gone with the lab's state at stop). */
export type HintLevels = Record<string, number>;

function levelsFile(plan: LabPlan): string {
  return join(labStateDir(plan.lab, plan.recipe), "hints.json");
}

export function readHintLevels(plan: LabPlan): HintLevels {
  const f = levelsFile(plan);
  try {
    return existsSync(f) ? (JSON.parse(readFileSync(f, "utf8")) as HintLevels) : {};
  } catch {
    return {};
  }
}

export function writeHintLevels(plan: LabPlan, levels: HintLevels): void {
  mkdirSync(labStateDir(plan.lab, plan.recipe), { recursive: true });
  writeFileSync(levelsFile(plan), JSON.stringify(levels));
}

/** The exercise's hints in order: `hint`, then `hints`. */
export function hintLadder(ex: Exercise): string[] {
  return [ex.hint, ...ex.hints];
}

/** One more hint for an exercise that still fails: the new level (1 = the first hint), at most the ladder's length. */
export function nextLevel(levels: HintLevels, ex: Exercise): number {
  const level = Math.min((levels[ex.id] ?? 0) + 1, hintLadder(ex).length);
  levels[ex.id] = level;
  return level;
}

export interface MistakeSeen {
  node: string;
  hint: string;
}

/** The state-aware hints whose probes match the lab as it is now. */
export async function mistakesSeen(ctx: ActionContext, ex: Exercise): Promise<MistakeSeen[]> {
  const out: MistakeSeen[] = [];
  const scope = scopeOf(ctx.plan, ctx.captured);
  for (const m of ex.mistakes) {
    for (const node of m.nodes) {
      const container = ctx.plan.nodes[node]?.container;
      if (!container) continue;
      const r = await ctx.engine
        // Generous: a probe may run two server CLI commands, each a Node start on the builtin server.
        .sh(container, renderLoose(m.when, scope), { timeoutMs: 30_000 })
        .catch(() => ({ exitCode: -1, stdout: "", stderr: "" }));
      if (r.exitCode === 0) out.push({ node, hint: renderLoose(m.hint, { ...scope, node, seen: r.stdout.trim() }) });
    }
  }
  return out;
}

export interface Graded {
  id: string;
  title: string;
  state: "pass" | "not yet";
  /** The check sent its own probe: a pass says the network works, not that the attendee typed the command. */
  probes: boolean;
  /** The latest hint shown (undefined when the exercise passes). */
  hint?: string;
  /** Every hint shown so far, in order (the last is `hint`). */
  hintsShown?: string[];
  /** How many hints the exercise has. */
  hintCount: number;
  /** State-aware hints whose probes match now. */
  mistakes?: MistakeSeen[];
  /** What the failing check printed. */
  seen?: string;
}

/**
 * Every exercise's state (or only those `only` names), with hints. The exercise `advance` names
 * (by default the first one that fails) shows one more hint than last time; the others repeat
 * what they showed.
 */
export async function grade(ctx: ActionContext, advance?: string, only?: readonly string[]): Promise<Graded[]> {
  const scope = scopeOf(ctx.plan);
  const levels = readHintLevels(ctx.plan);
  const out: Graded[] = [];
  let advanced = false;
  for (const ex of ctx.recipe.exercises.filter((e) => !only?.length || only.includes(e.id))) {
    const res = await checkExercise(ctx, ex);
    const ladder = hintLadder(ex).map((h) => renderLoose(h, scope));
    const base = { id: ex.id, title: renderLoose(ex.title, scope), probes: ex.probes, hintCount: ladder.length };
    if (res.ok) {
      out.push({ ...base, state: "pass" });
      continue;
    }
    const mine: boolean = advance ? advance === ex.id : !advanced;
    // The others show (and so have given) at least their first hint.
    const level = mine ? nextLevel(levels, ex) : Math.max(levels[ex.id] ?? 0, 1);
    levels[ex.id] = level;
    advanced ||= mine;
    const shown = ladder.slice(0, level);
    out.push({ ...base, state: "not yet", hint: shown.at(-1), hintsShown: shown, mistakes: await mistakesSeen(ctx, ex), seen: res.detail });
  }
  writeHintLevels(ctx.plan, levels);
  return out;
}

/** An exercise's lines: state and title, then its latest hint and the mistakes seen. */
export function describeGraded(x: Graded, verbose: boolean): string[] {
  if (x.state === "pass") return [`pass     ${x.id}: ${x.title}${x.probes ? " (check sent its own probe)" : ""}`];
  const n = x.hintsShown?.length ?? 1;
  const lines = [`not yet  ${x.id}: ${x.title}`, `         hint${x.hintCount > 1 ? ` ${n}/${x.hintCount}` : ""}: ${x.hint}`];
  for (const m of x.mistakes ?? []) lines.push(`         seen: ${m.hint}`);
  if (x.seen && verbose) lines.push(`         check: ${x.seen}`);
  return lines;
}
