import { down } from "../../lab/lifecycle.ts";
import { DEFAULT_LAB } from "../../lab/plan.ts";
import { closeWorkspace, workspaceOpen } from "../../workspace/mux.ts";
import { type Command, engineFor, LAB, labOf, needRecipe } from "../command.ts";

export const stopCommand: Command = {
  name: "stop",
  usage: "stop <recipe> [--lab NAME]",
  summary: "remove a lab's containers, networks, state and tmux session",
  flags: [LAB],
  async run(p, ctx) {
    const recipe = needRecipe(p, "stop");
    const lab = labOf(p);
    const engine = await engineFor(ctx);
    const open = await workspaceOpen(lab, recipe);
    const r = await ctx.progress.step(`stop ${recipe}${lab === DEFAULT_LAB ? "" : ` (lab ${lab})`}`, () => down(engine, recipe, lab));
    if (!r.removed.containers && !r.removed.networks && !open) ctx.progress.info(`${recipe} is not running; nothing to stop.`);
    else ctx.progress.info(`removed ${r.removed.containers} containers and ${r.removed.networks} networks.`);
    // Last: typed in the workspace's host pane, this ends the very shell running it.
    await closeWorkspace(lab, recipe);
    return 0;
  },
};
