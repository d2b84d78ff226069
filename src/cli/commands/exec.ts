import { UserError } from "../../errors.ts";
import { nodeOf, runningPlan } from "../../lab/lifecycle.ts";
import { type Command, engineFor, LAB, labOf, needRecipe } from "../command.ts";

export const execCommand: Command = {
  name: "exec",
  usage: "exec <recipe> <node> [--lab NAME] -- CMD...",
  summary: "run a command in a node's container (exit code passes through)",
  flags: [LAB],
  async run(p, ctx) {
    const recipe = needRecipe(p, "exec");
    const nodeName = p.positionals[1];
    if (!p.rest.length) throw new UserError("exec needs a command after --, e.g. ./start.ts exec recipe-0 peer-1 -- wg show", 2);
    const engine = await engineFor(ctx);
    const plan = await runningPlan(engine, recipe, labOf(p));
    if (!nodeName) throw new UserError(`exec needs a node: one of ${Object.keys(plan.nodes).join(", ")}.`, 2);
    const node = nodeOf(plan, nodeName);
    const r = await engine.exec(node.container, p.rest);
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    return r.exitCode;
  },
};
