import { spawnSync } from "node:child_process";
import { UserError } from "../../errors.ts";
import { nodeOf, runningPlan } from "../../lab/lifecycle.ts";
import { type Command, engineFor, LAB, labOf, needRecipe } from "../command.ts";

export const shellCommand: Command = {
  name: "shell",
  usage: "shell <recipe> <node> [--lab NAME]",
  summary: "an interactive shell in a node's container",
  flags: [LAB],
  async run(p, ctx) {
    const recipe = needRecipe(p, "shell");
    const engine = await engineFor(ctx);
    const plan = await runningPlan(engine, recipe, labOf(p));
    const nodeName = p.positionals[1];
    if (!nodeName) throw new UserError(`shell needs a node: one of ${Object.keys(plan.nodes).join(", ")}.`, 2);
    const node = nodeOf(plan, nodeName);
    const [cli, ...args] = engine.cliArgs();
    const r = spawnSync(cli!, [...args, "exec", "-it", node.container, "bash"], {
      stdio: "inherit",
    });
    return r.status ?? 1;
  },
};
