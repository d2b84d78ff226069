import { runningPlan } from "../../lab/lifecycle.ts";
import { natSummary, observePaths, tailscaleNodes } from "../../lab/paths.ts";
import { type Command, engineFor, LAB, labOf, needRecipe, out, table } from "../command.ts";

export const pathsCommand: Command = {
  name: "paths",
  usage: "paths <recipe> [--lab NAME] [--json] [--no-netcheck]",
  summary: "the path every pair of Tailscale clients uses (direct ip:port or DERP), as the clients report it",
  details:
    "Asks the clients themselves, never the lab's expectations: one `tailscale ping --until-direct=false`\n" +
    "per ordered pair (the path of that pong), `tailscale status --json` (CurAddr set = direct, Relay =\n" +
    "the DERP region; bytes sent and received), and a fresh `tailscale netcheck` on each client (UDP,\n" +
    "MappingVariesByDestIP, UPnP/NAT-PMP/PCP, its public ip:port). Takes a few seconds.",
  flags: [LAB, { name: "json", help: "machine-readable output" }, { name: "no-netcheck", help: "skip the netchecks (faster)" }],
  async run(p, ctx) {
    const recipe = needRecipe(p, "paths");
    const engine = await engineFor(ctx);
    const plan = await runningPlan(engine, recipe, labOf(p));
    if (tailscaleNodes(plan).length < 2) {
      out(`${recipe} has fewer than two Tailscale clients: no paths to show.`);
      return 0;
    }
    const report = await observePaths(engine, plan, { netcheck: !p.flags["no-netcheck"] });
    if (p.flags.json) {
      out(JSON.stringify(report, null, 2));
      return 0;
    }
    const rows = [["from", "to", "path", "via", "status CurAddr / Relay", "bytes tx/rx"]];
    for (const v of report.paths)
      rows.push([
        v.from,
        v.to,
        v.path.toUpperCase(),
        `${v.via}${v.ms !== undefined ? ` (${v.ms} ms)` : ""}`,
        `${v.curAddr || "-"} / ${v.relay || "-"}`,
        `${v.txBytes ?? "?"}/${v.rxBytes ?? "?"}`,
      ]);
    out(table(rows));
    out("");
    for (const c of report.clients)
      out(`${c.node} (${c.hostname || "?"} ${c.tailscaleIp ?? ""}, home DERP ${c.homeDerp ?? "?"}): ${c.error ?? natSummary(c.netcheck)}`);
    return 0;
  },
};
