import type { Engine } from "../../engine/engine.ts";
import { UserError } from "../../errors.ts";
import { down } from "../../lab/lifecycle.ts";
import { DEFAULT_LAB } from "../../lab/plan.ts";
import { closeWorkspace, workspaceOpen } from "../../workspace/mux.ts";
import type { Parsed } from "../args.ts";
import { type Command, engineFor, LAB, labOf, needRecipe } from "../command.ts";

/**
 * The recipe to stop. A lab whose recipe file was since broken or removed still stops: what
 * to remove is found by its labels, not by the recipe.
 */
async function stoppableRecipe(p: Parsed, engine: Engine, lab: string): Promise<string> {
  try {
    return needRecipe(p, "stop");
  } catch (e) {
    const name = p.positionals[0];
    if (!(e instanceof UserError) || !name) throw e;
    const running = (await engine.listContainers({ lab, recipe: name })).length + (await engine.listNetworks({ lab, recipe: name })).length;
    if (!running) throw e;
    return name;
  }
}

export const stopCommand: Command = {
  name: "stop",
  usage: "stop <recipe> [--lab NAME]",
  summary: "remove a lab's containers, networks, state and tmux session",
  flags: [LAB],
  async run(p, ctx) {
    const lab = labOf(p);
    const engine = await engineFor(ctx);
    const recipe = await stoppableRecipe(p, engine, lab);
    const open = await workspaceOpen(lab, recipe);
    const r = await ctx.progress.step(`stop ${recipe}${lab === DEFAULT_LAB ? "" : ` (lab ${lab})`}`, () => down(engine, recipe, lab));
    if (!r.removed.containers && !r.removed.networks && !open) ctx.progress.info(`${recipe} is not running; nothing to stop.`);
    else ctx.progress.info(`removed ${r.removed.containers} containers and ${r.removed.networks} networks.`);
    // Last: typed in the workspace's host pane, this ends the very shell running it.
    await closeWorkspace(lab, recipe);
    return 0;
  },
};
