import { UserError } from "../../errors.ts";
import { runningPlan } from "../../lab/lifecycle.ts";
import { actualText, observeMatrix, PROBE_TIMEOUT_S } from "../../lab/matrix.ts";
import { loadRecipe } from "../../recipe/load.ts";
import { type Command, engineFor, LAB, labOf, needRecipe, out, table } from "../command.ts";

export const matrixCommand: Command = {
  name: "matrix",
  usage: "matrix <recipe> [--lab NAME] [--json]",
  summary: "probe every source x destination x port with real TCP connections: intended vs actual",
  details:
    "For a recipe that declares `reachability` (recipe-5): from every node, a TCP connection to every\n" +
    `other node's tailnet address on each port (${PROBE_TIMEOUT_S} s each, in parallel), beside what the recipe\n` +
    "intends. 'visible but blocked' means the source's `tailscale status` lists the destination as a\n" +
    "peer, yet the connection gets no answer (the destination's packet filter drops it).\n" +
    "Exit status 0 whether or not the matrix matches (see `matches` in --json).",
  flags: [LAB, { name: "json", help: "machine-readable output" }],
  async run(p, ctx) {
    const name = needRecipe(p, "matrix");
    const recipe = loadRecipe(name);
    if (!recipe.reachability) throw new UserError(`${name} declares no reachability to probe (recipe-5 does).`);
    const engine = await engineFor(ctx);
    const plan = await runningPlan(engine, name, labOf(p));
    const report = await observeMatrix(engine, plan, recipe);
    if (p.flags.json) {
      out(JSON.stringify(report, null, 2));
      return 0;
    }
    const rows = [["from", "to", "port", "intended", "actual", ""]];
    for (const c of report.cells)
      rows.push([
        c.from,
        `${c.to} (${report.addresses[c.to] || "no address"})`,
        String(c.port),
        c.intended,
        actualText(c),
        c.match ? "ok" : "DIFFERS",
      ]);
    out(table(rows));
    const differ = report.cells.filter((c) => !c.match).length;
    out("");
    out(
      differ
        ? `${differ} of ${report.cells.length} probes differ from the intended reachability.`
        : `All ${report.cells.length} probes match the intended reachability.`,
    );
    return 0;
  },
};
