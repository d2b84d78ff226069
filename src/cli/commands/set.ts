import { type ActionContext, setOptions } from "../../lab/actions.ts";
import { runningPlan } from "../../lab/lifecycle.ts";
import { parseAssignments } from "../../lab/live.ts";
import { loadRecipe } from "../../recipe/load.ts";
import { type Command, engineFor, LAB, labFlag, labOf, needRecipe } from "../command.ts";

export const setCommand: Command = {
  name: "set",
  usage: "set <recipe> OPTION=VALUE... [--lab NAME]",
  summary: "change a live option of a running lab (recipe-4: nat-a=hard), without restarting anything",
  details:
    "The options a recipe can change while it runs declare how to apply themselves (`apply:` in its\n" +
    "recipe.yaml); ./start.ts --help <recipe> lists options and choices. Every assignment is checked\n" +
    "before anything changes; one change runs at a time per lab (a second is refused, not queued).",
  flags: [LAB],
  async run(p, ctx) {
    const recipe = needRecipe(p, "set");
    const r = loadRecipe(recipe);
    const values = parseAssignments(r, p.positionals.slice(1));
    const engine = await engineFor(ctx);
    const plan = await runningPlan(engine, recipe, labOf(p));
    const actx: ActionContext = { engine, recipe: r, plan, captured: {}, progress: ctx.progress, signal: ctx.signal };
    const changed = await setOptions(actx, values, ctx.progress);
    ctx.progress.info(
      `${recipe}: ${changed.join(" ")} applied. ./start.ts paths ${recipe}${labFlag(plan.lab)} shows the path the clients use now.`,
    );
    return 0;
  },
};
