/**
 * From runs to the published table, pure: one row per server and size (medians over the runs
 * that completed, the spread of the time to full mesh), and the plain statement of where
 * Headscale measured faster or leaner than the builtin server.
 */
import { median, round, secs } from "../lib/stats.ts";
import { SATURATED, spread } from "./aggregate.ts";
import type { LoadResult } from "./loadgen.ts";

export type Row = {
  server: string;
  nodes: number;
  runs: number;
  /** Medians over the runs that completed. */
  fullMeshS: number | null;
  spread: string;
  registeredS: number | null;
  cpuS: number | null;
  rssMiB: number | null;
  kibPerNode: number | null;
  resets: number | null;
  joinS: number | null;
  leaveS: number | null;
  churnS: number | null;
  churnKiB: number | null;
  /** Real tailscaled clients: median (max) seconds until each lists every other node. */
  real: string;
  restartS: number | null;
  /** The load generator's busy share at full mesh: all its processes, and the busiest one. */
  loadgen: string;
  note: string;
};

const med = (xs: number[], digits = 2) => (xs.length ? round(median(xs), digits) : null);
const some = <T>(xs: (T | null | undefined)[]) => xs.filter((x): x is T => x !== null && x !== undefined);
const pct = (x: number) => `${Math.round(x * 100)}%`;

/** Real clients' times over all runs: "median (max) s", or why there are none. */
function realCell(done: LoadResult[]): string {
  const why = done.map((r) => r.real).find((x) => x && "unavailable" in x);
  if (why && "unavailable" in why) return why.unavailable;
  const ts = done.flatMap((r) => (r.real && "allPeersS" in r.real ? r.real.allPeersS : []));
  return ts.length ? `${secs(median(ts) * 1000)} (${secs(Math.max(...ts) * 1000)}) s` : "";
}

function loadgenCell(done: LoadResult[]): string {
  if (!done.length) return "";
  const busy = median(done.map((r) => r.loadgen.busy));
  const worker = median(done.map((r) => r.loadgen.busiestWorker));
  const flag = busy > SATURATED || worker > SATURATED ? " SATURATED: the time may be the load generator's" : "";
  return `${pct(busy)} (${done[0]!.loadgen.workers} procs, busiest ${pct(worker)})${flag}`;
}

/** Why some runs did not finish: the wall-time limit (not an error) or an error. */
function unfinished(rs: LoadResult[]): string {
  const late = rs.find((r) => r.timedOut);
  const t = late?.timedOut;
  if (t) return `did not complete within ${t.limitS} s (during ${t.stage}; ${t.progress}; ${late.streamResets} stream resets). `;
  const e = rs.find((r) => r.error);
  return e ? `FAILED in ${rs.filter((r) => r.error).length} of ${rs.length} runs: ${e.error} ` : "";
}

/** One row from several runs of one server at one size. */
export function summarize(server: string, n: number, rs: LoadResult[]): Row {
  const done = rs.filter((r) => r.complete);
  const times = done.map((r) => r.fullMeshS!);
  return {
    server,
    nodes: n,
    runs: rs.length,
    fullMeshS: med(times),
    spread: spread(times, (x) => secs(x * 1000)),
    registeredS: med(some(done.map((r) => r.registeredS))),
    cpuS: med(done.map((r) => r.serverCpuS)),
    rssMiB: med(
      done.map((r) => r.serverPeakRssMiB),
      1,
    ),
    kibPerNode: med(
      done.map((r) => r.mapBytesPerNode / 1024),
      1,
    ),
    resets: med(
      done.map((r) => r.streamResets),
      0,
    ),
    joinS: med(some(done.map((r) => r.joinS))),
    leaveS: med(some(done.map((r) => r.leaveS))),
    churnS: med(some(done.map((r) => r.churn?.s))),
    churnKiB: med(some(done.map((r) => (r.churn ? r.churn.bytesPerNode / 1024 : null))), 1),
    real: realCell(done),
    restartS: med(some(done.map((r) => r.restartS))),
    loadgen: loadgenCell(done),
    note: unfinished(rs).trim(),
  };
}

const kindOf = (r: Row) => r.server.split(" ")[0]!;

/** What is compared between servers: lower is better for all of them. */
const METRICS: { key: keyof Row; what: string; unit: string }[] = [
  { key: "fullMeshS", what: "mass join to full mesh", unit: "s" },
  { key: "joinS", what: "one more node joining", unit: "s" },
  { key: "leaveS", what: "one node leaving", unit: "s" },
  { key: "churnS", what: "endpoint churn", unit: "s" },
  { key: "restartS", what: "netmaps back after a restart", unit: "s" },
  { key: "cpuS", what: "server CPU to full mesh", unit: "CPU s" },
  { key: "rssMiB", what: "server peak memory", unit: "MiB" },
  { key: "kibPerNode", what: "map bytes per node to full mesh", unit: "KiB" },
  { key: "churnKiB", what: "map bytes per node for the churn", unit: "KiB" },
];

/**
 * Every measured figure where a Headscale configuration did better than the builtin server at
 * the same size, as one plain sentence (or the statement that it did nowhere in what was run).
 */
export function whereHeadscaleWins(rows: Row[]): string {
  const wins: string[] = [];
  const sizes = [...new Set(rows.map((r) => r.nodes))].sort((a, b) => a - b);
  for (const n of sizes) {
    const bi = rows.find((r) => r.nodes === n && kindOf(r) === "builtin");
    if (!bi) continue;
    for (const m of METRICS) {
      const b = bi[m.key];
      if (typeof b !== "number") continue;
      const best = rows
        .filter((r) => r.nodes === n && kindOf(r).startsWith("headscale") && typeof r[m.key] === "number")
        .sort((x, y) => (x[m.key] as number) - (y[m.key] as number))[0];
      if (best && (best[m.key] as number) < b)
        wins.push(`${m.what} at ${n} nodes (${kindOf(best)} ${best[m.key]} ${m.unit}, builtin ${b} ${m.unit})`);
    }
    const hsDone = rows.some((r) => r.nodes === n && kindOf(r).startsWith("headscale") && r.fullMeshS !== null);
    if (bi.fullMeshS === null && hsDone) wins.push(`completing ${n} nodes at all (the builtin server did not within its limit)`);
    if (bi.fullMeshS === null && !hsDone) {
      const further = rows
        .filter((r) => r.nodes === n && kindOf(r).startsWith("headscale") && reached(r) > reached(bi))
        .sort((x, y) => reached(y) - reached(x))[0];
      if (further)
        wins.push(
          `getting further at ${n} nodes, where neither completed within the limit (${kindOf(further)}: ${reached(further)} of ${n} nodes had all peers, builtin ${reached(bi)})`,
        );
    }
  }
  const compared = rows.some((r) => kindOf(r) === "builtin") && rows.some((r) => kindOf(r).startsWith("headscale"));
  if (!compared) return "Headscale and the builtin server were not both measured, so nothing is said about which is faster.";
  return wins.length
    ? `Where Headscale measured faster or leaner than the builtin server: ${wins.join("; ")}.`
    : "In every figure measured here the builtin server was at least as fast and as lean as the better Headscale configuration; Headscale was faster nowhere in these runs.";
}

/** How many nodes had all their peers when a run hit its limit (from its note; -1 if unknown). */
function reached(r: Row): number {
  const m = /(\d+) had got there/.exec(r.note);
  return m ? Number(m[1]) : -1;
}

/**
 * What the load generator's ceiling (the null server) says about the real servers, per size:
 * how far each real server's time to full mesh is above it.
 */
export function ceilingSentence(rows: Row[]): string {
  const parts: string[] = [];
  for (const nul of rows.filter((r) => kindOf(r) === "null" && r.fullMeshS !== null)) {
    const others = rows.filter((r) => r.nodes === nul.nodes && kindOf(r) !== "null" && r.fullMeshS !== null);
    const vs = others.map((r) => `${kindOf(r)} ${round(r.fullMeshS! / nul.fullMeshS!, 1)}x`).join(", ");
    parts.push(
      `at ${nul.nodes} nodes the load generator reached full mesh against the null server in ${nul.fullMeshS} s${vs ? ` (the real servers took ${vs} that)` : ""}`,
    );
  }
  return parts.length
    ? `Load generator ceiling: ${parts.join("; ")}. A server near the null server's time (or below it: the null server sends more, smaller deltas than a busy server batches) is bounded by the load generator there, as its busy share shows; one well above it is measuring the server.`
    : "No null-server run in these results: the load generator's ceiling was not measured (add null to --servers).";
}
