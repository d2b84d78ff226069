import type { ActionContext } from "../../lab/actions.ts";
import { describeGraded, grade } from "../../lab/hints.ts";
import { runningPlan } from "../../lab/lifecycle.ts";
import { DEFAULT_LAB } from "../../lab/plan.ts";
import { listRecipes, loadRecipe } from "../../recipe/load.ts";
import { forOptions } from "../../recipe/nodes.ts";
import { type Command, engineFor, LAB, labOf, needExercises, needRecipe, out } from "../command.ts";

export const checkCommand: Command = {
  name: "check",
  usage: "check <recipe> [exercise...] [--lab NAME] [--json]",
  summary: "the exercises of a recipe (or only those named): pass / not yet, with a hint (one more per check); exit 0 only when all pass",
  flags: [
    LAB,
    {
      name: "json",
      help: "machine-readable: each exercise's id, title, state, hint shown, hints shown so far and mistakes seen (exit code as without)",
    },
  ],
  async run(p, ctx) {
    const recipe = needRecipe(p, "check");
    const engine = await engineFor(ctx);
    const plan = await runningPlan(engine, recipe, labOf(p));
    const r = forOptions(loadRecipe(recipe), plan.options);
    const only = p.positionals.slice(1);
    needExercises(r, only);
    const actx: ActionContext = { engine, recipe: r, plan, captured: {}, signal: ctx.signal };
    const open = await engine.hostRoutableNetworks({ lab: plan.lab, recipe });
    if (open.length)
      ctx.progress.info(
        `warning: this lab was started by an older version and the host can route into ${open.join(", ")}, so a "not reachable" check can lie; stop and start it again.`,
      );
    const results = await grade(actx, undefined, only);
    const failed = results.filter((x) => x.state !== "pass").length;
    if (p.flags.json) {
      out(JSON.stringify({ recipe, lab: plan.lab, passed: results.length - failed, total: results.length, exercises: results }, null, 2));
      return failed ? 1 : 0;
    }
    for (const x of results) out(describeGraded(x, ctx.progress.verbose).join("\n"));
    out(`\n${summaryLine(failed, results.length, only.length > 0)}`);
    const labText = labOf(p) === DEFAULT_LAB ? "" : ` --lab ${labOf(p)}`;
    const next = listRecipes()[listRecipes().indexOf(recipe) + 1];
    if (failed)
      out(
        `Stuck? ./start.ts hint ${recipe}${labText} gives a further hint; ./start.ts solve ${recipe} <exercise>${labText} applies the reference solution of one.`,
      );
    else if (!only.length) out(`Next: ./start.ts stop ${recipe}${labText}${next ? `, then ./start.ts ${next} (labs/${next}.md)` : ""}.`);
    return failed ? 1 : 0;
  },
};

function summaryLine(failed: number, total: number, named: boolean): string {
  const of = named ? `the ${total} named` : `${total}`;
  if (failed) return `${failed} of ${of} not done yet.`;
  return named && total === 1 ? "The named exercise passes." : `All ${of} exercises pass.`;
}
