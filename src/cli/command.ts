import type { Engine } from "../engine/engine.ts";
import { ensureEngine } from "../engine/ensure.ts";
import { UserError } from "../errors.ts";
import { DEFAULT_LAB, validLabName } from "../lab/plan.ts";
import { listRecipes, loadRecipe } from "../recipe/load.ts";
import type { Recipe } from "../recipe/types.ts";
import type { Progress } from "../ui/progress.ts";
import type { FlagSpec, Parsed } from "./args.ts";
import { asTyped } from "./as-typed.ts";

/** One `./start.ts` command: its help text, its flags, and what it does. */
export interface Command {
  name: string;
  usage: string;
  summary: string;
  details?: string;
  flags: FlagSpec[];
  /** Ctrl-C is this command's normal end (a --watch loop): no cleanup message, its own exit code. */
  endsOnInterrupt?: boolean;
  run(p: Parsed, ctx: Ctx): Promise<number>;
}

export interface Ctx {
  progress: Progress;
  signal: AbortSignal;
  /**
   * What Ctrl-C means from now on, said when it comes (undefined: nothing to say). By default a
   * command cleans up what it created; a server that has finished starting only stops serving.
   */
  onInterruptSay?: (line: string | undefined) => void;
}

/** Flags every command takes. */
export const GLOBAL: FlagSpec[] = [
  { name: "help", help: "show help for this command" },
  { name: "verbose", help: "show engine and command output" },
];

export const LAB: FlagSpec = {
  name: "lab",
  value: "NAME",
  help: "a separate copy of the lab with prefixed names and other subnets (default: the workshop's names)",
};

export function labOf(p: Parsed): string {
  return validLabName((p.flags.lab as string | undefined) ?? DEFAULT_LAB);
}

/** ` --lab NAME` for a non-default lab, for the commands we tell the user to type next. */
export function labFlag(lab: string): string {
  return lab === DEFAULT_LAB ? "" : ` --lab ${lab}`;
}

export function needRecipe(p: Parsed, cmd: string): string {
  const r = p.positionals[0];
  if (!r) throw new UserError(`\`${cmd}\` needs a recipe: one of ${listRecipes().join(", ")}.`, 2);
  loadRecipe(r);
  return r;
}

/** The engine, which must already be there (only setup and a lab start may install one). */
export async function engineFor(ctx: Ctx): Promise<Engine> {
  return ensureEngine({ allowSetup: false, progress: ctx.progress });
}

export function out(line = ""): void {
  process.stdout.write(`${asTyped(line)}\n`);
}

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** Refuse, in one sentence, an exercise id the recipe lacks (check, hint and solve take them). */
export function needExercises(recipe: Recipe, ids: readonly string[]): void {
  const unknown = ids.find((id) => !recipe.exercises.some((e) => e.id === id));
  if (unknown !== undefined)
    throw new UserError(
      `${recipe.name} has no exercise "${unknown}"; its exercises are: ${recipe.exercises.map((e) => e.id).join(", ")}.`,
      2,
    );
}
