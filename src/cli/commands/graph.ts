import { writeFileSync } from "node:fs";
import { findEngine } from "../../engine/connect.ts";
import { Engine } from "../../engine/engine.ts";
import { topologyMermaid, topologySvg } from "../../graph/topology.ts";
import { status } from "../../lab/lifecycle.ts";
import { type LabPlan, readPlan } from "../../lab/plan.ts";
import { loadRecipe } from "../../recipe/load.ts";
import { type Command, LAB, labOf, needRecipe } from "../command.ts";

export const graphCommand: Command = {
  name: "graph",
  usage: "graph <recipe> [--mermaid] [--out FILE] [--lab NAME]",
  summary: "a picture of the topology (SVG, or mermaid text); marks what is up when the lab runs",
  flags: [
    LAB,
    { name: "mermaid", help: "print mermaid text instead of SVG" },
    { name: "out", value: "FILE", help: "write to FILE instead of stdout" },
  ],
  async run(p) {
    const recipe = needRecipe(p, "graph");
    const r = loadRecipe(recipe);
    const lab = labOf(p);
    let plan: LabPlan | undefined;
    let states: Record<string, string> | undefined;
    // Mark what is up when an engine answers and the lab runs; otherwise draw the plan.
    const found = await findEngine();
    if (found.live) {
      const engine = Engine.of(found.live);
      const running = (await status(engine, recipe, lab))[0];
      if (running) {
        plan = readPlan(lab, recipe);
        states = Object.fromEntries(running.nodes.map((n) => [n.node, n.state]));
      }
    }
    const text = p.flags.mermaid ? topologyMermaid(r, plan, states) : topologySvg(r, plan, states);
    if (p.flags.out) writeFileSync(p.flags.out as string, text);
    else process.stdout.write(text);
    return 0;
  },
};
