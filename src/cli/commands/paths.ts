import { UserError } from "../../errors.ts";
import { runningPlan } from "../../lab/lifecycle.ts";
import { natSummary, observePaths, type PathsReport, tailscaleNodes } from "../../lab/paths.ts";
import { type Command, engineFor, LAB, labOf, needRecipe, out, table } from "../command.ts";

/** The report as the table the person reads: one row per ordered pair, then each client's NAT. */
export function pathsText(report: PathsReport): string[] {
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
  const lines = [table(rows), ""];
  for (const c of report.clients)
    lines.push(
      `${c.node} (${c.hostname || "?"} ${c.tailscaleIp ?? ""}, home DERP ${c.homeDerp ?? "?"}): ${c.error ?? natSummary(c.netcheck)}`,
    );
  return lines;
}

/** Resolves after `ms`, or at once when the signal aborts (Ctrl-C): never rejects. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

export const pathsCommand: Command = {
  name: "paths",
  usage: "paths <recipe> [--lab NAME] [--json] [--no-netcheck] [--watch [--every SECONDS]]",
  summary: "the path every pair of Tailscale clients uses (direct ip:port or DERP), as the clients report it",
  details:
    "Asks the clients themselves, never the lab's expectations: one `tailscale ping --until-direct=false`\n" +
    "per ordered pair (the path of that pong), `tailscale status --json` (CurAddr set = direct, Relay =\n" +
    "the DERP region; bytes sent and received), and a fresh `tailscale netcheck` on each client (UDP,\n" +
    "MappingVariesByDestIP, UPnP/NAT-PMP/PCP, its public ip:port). Takes a few seconds.\n" +
    "--watch asks again every few seconds (the workspace's paths pane runs it) until Ctrl-C.",
  flags: [
    LAB,
    { name: "json", help: "machine-readable output (with --watch: one JSON report per line)" },
    { name: "no-netcheck", help: "skip the netchecks (faster)" },
    { name: "watch", help: "refresh until Ctrl-C" },
    { name: "every", value: "SECONDS", help: "with --watch: seconds between reports (default 5)" },
  ],
  endsOnInterrupt: true,
  async run(p, ctx) {
    const recipe = needRecipe(p, "paths");
    const every = Number(p.flags.every ?? 5);
    if (!Number.isFinite(every) || every < 1 || every > 3600)
      throw new UserError(`--every takes seconds between 1 and 3600, not "${p.flags.every}".`, 2);
    const engine = await engineFor(ctx);
    const plan = await runningPlan(engine, recipe, labOf(p));
    if (tailscaleNodes(plan).length < 2) {
      out(`${recipe} has fewer than two Tailscale clients: no paths to show.`);
      return 0;
    }
    const observe = () => observePaths(engine, plan, { netcheck: !p.flags["no-netcheck"] });
    if (!p.flags.watch) {
      const report = await observe();
      out(p.flags.json ? JSON.stringify(report, null, 2) : pathsText(report).join("\n"));
      return 0;
    }
    const tty = process.stdout.isTTY && !p.flags.json;
    const interrupted = new Promise<undefined>((resolve) => ctx.signal.addEventListener("abort", () => resolve(undefined), { once: true }));
    while (!ctx.signal.aborted) {
      // A report still being asked for when Ctrl-C comes is abandoned, not waited for.
      const report = await Promise.race([observe(), interrupted]);
      if (!report) break;
      if (p.flags.json) out(JSON.stringify(report));
      else {
        const head = `${recipe} paths at ${report.at.slice(11, 19)} UTC, every ${every} s (Ctrl-C ends)`;
        out(`${tty ? "\x1b[H\x1b[2J" : "\n"}${head}\n${pathsText(report).join("\n")}`);
      }
      await pause(every * 1000, ctx.signal);
    }
    return 0;
  },
};
