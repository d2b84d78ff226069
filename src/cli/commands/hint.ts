import type { ActionContext } from "../../lab/actions.ts";
import { describeGraded, grade } from "../../lab/hints.ts";
import { runningPlan } from "../../lab/lifecycle.ts";
import { loadRecipe } from "../../recipe/load.ts";
import { forOptions } from "../../recipe/nodes.ts";
import { type Command, engineFor, LAB, labOf, needExercises, needRecipe, out } from "../command.ts";

export const hintCommand: Command = {
  name: "hint",
  usage: "hint <recipe> [exercise] [--lab NAME]",
  summary: "one more hint for the first exercise not done yet (or the one named), and the mistakes the lab shows",
  flags: [LAB],
  async run(p, ctx) {
    const recipe = needRecipe(p, "hint");
    const engine = await engineFor(ctx);
    const plan = await runningPlan(engine, recipe, labOf(p));
    const r = forOptions(loadRecipe(recipe), plan.options);
    const which = p.positionals[1];
    if (which) needExercises(r, [which]);
    const actx: ActionContext = { engine, recipe: r, plan, captured: {}, signal: ctx.signal };
    const results = await grade(actx, which, which ? [which] : undefined);
    const x = which ? results.find((e) => e.id === which) : results.find((e) => e.state !== "pass");
    if (!x) {
      out(`All ${results.length} exercises of ${recipe} pass: no hint needed.`);
      return 0;
    }
    if (x.state === "pass") {
      out(`${x.id} passes already: no hint needed.`);
      return 0;
    }
    out(describeGraded(x, ctx.progress.verbose).join("\n"));
    for (const [i, h] of (x.hintsShown ?? []).slice(0, -1).entries()) out(`         (hint ${i + 1}: ${h})`);
    return 0;
  },
};
