import { status } from "../../lab/lifecycle.ts";
import { DEFAULT_LAB } from "../../lab/plan.ts";
import { loadRecipe } from "../../recipe/load.ts";
import { type Command, engineFor, LAB, out, table } from "../command.ts";

export const statusCommand: Command = {
  name: "status",
  usage: "status [<recipe>] [--lab NAME] [--json]",
  summary: "what runs: labs, nodes, container names, addresses, state",
  flags: [LAB, { name: "json", help: "machine-readable output" }],
  async run(p, ctx) {
    const recipe = p.positionals[0];
    if (recipe) loadRecipe(recipe);
    const engine = await engineFor(ctx);
    const labs = await status(engine, recipe, p.flags.lab as string | undefined);
    if (p.flags.json) {
      out(JSON.stringify({ engine: { kind: engine.kind, version: engine.version, host: engine.dockerHost }, labs }, null, 2));
      return 0;
    }
    if (!labs.length) {
      out(recipe ? `${recipe} is not running.` : "No lab is running.");
      return 0;
    }
    for (const l of labs) {
      const opts = Object.entries(l.options)
        .map(([k, v]) => ` --${k} ${v}`)
        .join("");
      out(`${l.recipe}${l.lab === DEFAULT_LAB ? "" : ` (lab ${l.lab})`}${opts}`);
      const rows = [["  node", "container", "hostname", "state", "addresses"]];
      for (const n of l.nodes)
        rows.push([
          `  ${n.node}`,
          n.container,
          n.hostname,
          n.state,
          Object.entries(n.addresses)
            .map(([k, v]) => `${v} (${k})`)
            .join(", "),
        ]);
      out(table(rows));
    }
    return 0;
  },
};
