import { UserError } from "../../errors.ts";
import { runningPlan } from "../../lab/lifecycle.ts";
import { readPlan } from "../../lab/plan.ts";
import { exercisesBefore, resetLab } from "../../lab/reset.ts";
import { listRecipes, loadRecipe } from "../../recipe/load.ts";
import { forOptions } from "../../recipe/nodes.ts";
import { holdWorkspace, reopenNodePanes } from "../../workspace/mux.ts";
import type { Parsed } from "../args.ts";
import { type Command, engineFor, LAB, labFlag, labOf, needRecipe } from "../command.ts";

export const resetCommand: Command = {
  name: "reset",
  usage: "reset <recipe> [--to EXERCISE] [--lab NAME]",
  summary: "a running lab back to fresh, or to just before one exercise (the earlier ones solved)",
  details:
    "Recreates the lab's containers as a start would (same names, addresses, subnets, keys, options;\n" +
    "a live option keeps its last `set` value), runs the recipe's setup, and with --to replays the\n" +
    "reference solutions of the exercises before EXERCISE. The networks stay, and nothing on the host\n" +
    "is touched: the tmux workspace stays open and its node panes get a shell in the new containers.\n" +
    "Whatever was done inside the containers since the start is gone.",
  flags: [{ name: "to", value: "EXERCISE", help: "stop just before this exercise (default: a fresh lab, no exercise done)" }, LAB],
  async run(p, ctx) {
    const recipe = knownRecipe(p);
    const lab = labOf(p);
    const to = p.flags.to as string | undefined;
    const saved = readPlan(lab, recipe);
    if (!saved) throw notRunning(recipe, lab);
    const r = forOptions(loadRecipe(recipe), saved.options);
    const earlier = exercisesBefore(r, to, optionsNote(recipe, to, saved.options));
    const engine = await engineFor(ctx);
    const plan = await runningPlan(engine, recipe, lab).catch((e) => {
      throw e instanceof UserError ? notRunning(recipe, lab) : e;
    });
    ctx.onInterruptSay?.(
      `Interrupted: ${recipe} is left part-way; ./start.ts reset ${recipe}${to ? ` --to ${to}` : ""}${labFlag(lab)} again finishes it.`,
    );
    const t0 = Date.now();
    const mux = await holdWorkspace(lab, recipe);
    let result: Awaited<ReturnType<typeof resetLab>>;
    try {
      result = await resetLab(engine, plan, { to, progress: ctx.progress, signal: ctx.signal });
    } catch (e) {
      if (!(e instanceof UserError) || e.exitCode === 130) throw e;
      throw new UserError(
        `${e.message.replace(/\.?$/, ".")} ${recipe} is left part-way: ./start.ts reset ${recipe}${to ? ` --to ${to}` : ""}${labFlag(lab)} tries again.`,
        e.exitCode,
        e.details,
      );
    } finally {
      const line = await reopenNodePanes(engine, plan, mux).catch(() => undefined);
      if (line) ctx.progress.info(line);
    }
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    const where = to
      ? `just before exercise ${to}${earlier.length ? ` (solved: ${result.replayed.join(", ")})` : " (the first)"}`
      : "fresh, no exercise done";
    ctx.progress.info(`${recipe} is reset in ${secs}s: ${where}.`);
    if (result.dropped.length)
      ctx.progress.info(
        `Not kept: ${result.dropped.join(" ")}, which only a running lab can have; ./start.ts set ${recipe} ${result.dropped.join(" ")}${labFlag(lab)} sets it again.`,
      );
    ctx.progress.info(`Next: ./start.ts check ${recipe}${labFlag(lab)} shows where you are.`);
    return 0;
  },
};

/** Bad input is exit 2: a recipe that does not exist, too. */
function knownRecipe(p: Parsed): string {
  const name = p.positionals[0];
  if (name && !listRecipes().includes(name))
    throw new UserError(`Unknown recipe "${name}"; the recipes are: ${listRecipes().join(", ")}.`, 2);
  return needRecipe(p, "reset");
}

function notRunning(recipe: string, lab: string): UserError {
  return new UserError(
    `${recipe} is not running${lab === "default" ? "" : ` in lab "${lab}"`}, so there is nothing to reset; start it with ./start.ts ${recipe}${labFlag(lab)}.`,
    2,
  );
}

/** ` (started with --layout headscale)` when EXERCISE belongs to another choice of the lab's options. */
function optionsNote(recipe: string, to: string | undefined, options: Record<string, string>): string {
  const ex = loadRecipe(recipe).exercises.find((e) => e.id === to);
  if (!ex?.when) return "";
  const [opt] = ex.when.split("=");
  return ` (started with --${opt} ${options[opt!]})`;
}
