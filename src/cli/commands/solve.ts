import { type ActionContext, solveExercise } from "../../lab/actions.ts";
import { runningPlan } from "../../lab/lifecycle.ts";
import { loadRecipe } from "../../recipe/load.ts";
import { forOptions } from "../../recipe/nodes.ts";
import { type Command, engineFor, LAB, labOf, needExercises, needRecipe } from "../command.ts";

export const solveCommand: Command = {
  name: "solve",
  usage: "solve <recipe> [exercise] [--lab NAME]",
  summary: "apply the reference solution (all exercises, or one)",
  flags: [LAB],
  async run(p, ctx) {
    const recipe = needRecipe(p, "solve");
    const engine = await engineFor(ctx);
    const plan = await runningPlan(engine, recipe, labOf(p));
    const r = forOptions(loadRecipe(recipe), plan.options);
    const which = p.positionals[1];
    if (which) needExercises(r, [which]);
    const exercises = which ? r.exercises.filter((e) => e.id === which) : r.exercises;
    const actx: ActionContext = {
      engine,
      recipe: r,
      plan,
      captured: {},
      progress: ctx.progress,
      signal: ctx.signal,
    };
    for (const ex of exercises) await solveExercise(actx, ex);
    return 0;
  },
};
