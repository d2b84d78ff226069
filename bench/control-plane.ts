import { availableParallelism } from "node:os";
import { limitFor, parseLimits } from "./control/aggregate.ts";
import { type LoadResult, runLoad } from "./control/loadgen.ts";
import { methodNotes } from "./control/method.ts";
import { cpuSplit, pinSelf } from "./control/proc.ts";
import { type ControlServer, HEADSCALE_TUNED, startBuiltin, startHeadscale, startNull } from "./control/servers.ts";
import { type Row, summarize } from "./control/summary.ts";
import { type Benchmark, checkAborted, list, num } from "./lib/bench.ts";
import { round } from "./lib/stats.ts";
import type { Bar } from "./lib/types.ts";

async function start(kind: string, cpus: string | undefined): Promise<ControlServer | { unavailable: string }> {
  if (kind === "headscale") return startHeadscale({ cpus });
  if (kind === "headscale-tuned") return startHeadscale({ cpus, tuning: HEADSCALE_TUNED(cpus ? 1 : availableParallelism()) });
  if (kind === "builtin") return startBuiltin({ cpus });
  if (kind === "null") return startNull({ cpus });
  return { unavailable: `unknown control server "${kind}" (null, headscale, headscale-tuned, builtin)` };
}

/** How many CPUs a taskset list like "1-3,5" names. */
function cpuCount(list: string): number {
  return list.split(",").reduce((n, part) => {
    const [a, b] = part.split("-").map(Number);
    return n + (b === undefined ? 1 : b - a! + 1);
  }, 0);
}

function runLine(kind: string, n: number, i: number, runs: number, r: LoadResult): string {
  if (r.timedOut)
    return `${kind} ${n} nodes, run ${i}/${runs}: did not complete within ${r.timedOut.limitS} s (during ${r.timedOut.stage}; ${r.timedOut.progress})`;
  const f = (x: number | null, d = 2) => (x === null ? "-" : x.toFixed(d));
  return (
    `${kind} ${n} nodes, run ${i}/${runs}: full mesh ${f(r.fullMeshS, 1)} s, CPU ${r.serverCpuS.toFixed(1)} s, ` +
    `peak RSS ${Math.round(r.serverPeakRssMiB)} MiB, ${Math.round(r.mapBytesPerNode / 1024)} KiB/node, ${r.streamResets} resets, ` +
    `load generator ${Math.round(r.loadgen.busy * 100)}% busy (busiest process ${Math.round(r.loadgen.busiestWorker * 100)}%); ` +
    `join ${f(r.joinS)} s, leave ${f(r.leaveS)} s, churn ${r.churn ? `${r.churn.s.toFixed(2)} s (${(r.churn.bytesPerNode / 1024).toFixed(1)} KiB/node)` : "-"}` +
    (r.real && "allPeersS" in r.real ? `, real clients see all in ${r.real.allPeersS.map((x) => x.toFixed(1)).join("/")} s` : "") +
    (r.restartS !== null ? `, netmaps back ${r.restartS.toFixed(1)} s after a restart` : "") +
    (r.error ? `; FAILED: ${r.error}` : "")
  );
}

/**
 * Control plane at scale: N simulated nodes (our TypeScript client side of the Tailscale control
 * protocol, driven by several load-generator processes) register with a fresh server on
 * loopback and each hold a map stream; timed until every node has all N-1 peers, then the
 * scenarios on the steady tailnet (one joins, one leaves, K change endpoints, real tailscaled
 * clients join, the server restarts). Server and load generator on separate CPUs where the
 * machine allows; several runs per size, medians and spread; a null server beside the real
 * ones shows the load generator's own ceiling.
 */
export const controlPlane: Benchmark = {
  name: "control-plane",
  title: "Control plane at scale: N simulated nodes, Headscale vs builtin",
  minutes:
    "the defaults (4 servers, 100/1000/5000 nodes, 3 runs) are estimated at 3.5-4.5 hours on 2 cores: 100 nodes about 5 min, 1000 about 1.5-2.5 h, 5000 about 2 h (each server's first run there is expected to reach its 1800 s limit, which ends that server's runs); --sizes 100 alone about 5 min",
  options: {
    sizes: { default: "100,1000,5000", help: "numbers of simulated nodes" },
    servers: {
      default: "null,headscale,headscale-tuned,builtin",
      help: "control servers to measure (null: the load generator's ceiling; headscale-tuned: shorter batching, one map worker per CPU)",
    },
    concurrency: { default: "50", help: "registrations in flight at once (over all workers)" },
    workers: { default: "auto", help: "load generator processes (auto: one per load-generator CPU, at least 2)" },
    "size-limits": {
      default: "100:300,1000:1200,5000:1800",
      help: "wall-time limit of one run per size, nodes:seconds (a size not listed takes the next larger one's); a run past it is reported as not completed",
    },
    runs: { default: "3", help: "runs per server and size (medians and spread reported)" },
    leave: { default: "yes", help: "delete one node after the join and time until no other node lists it (yes|no)" },
    churn: { default: "10", help: "nodes that report new endpoints, timed until every other node has them (0: none)" },
    restart: { default: "yes", help: "restart the server at the end of each run and time until every node has its netmap again (yes|no)" },
    "real-clients": {
      default: "5",
      help: "real tailscaled clients that join together near the end of each run, timed until each lists every node",
    },
    clients: { default: "realistic", help: "realistic (tailscaled 1.98's recorded Hostinfo, endpoints, a lite update) or minimal" },
  },
  async run(ctx) {
    const t0 = Date.now();
    const sizes = list(ctx, "sizes").map(Number);
    if (!sizes.length || sizes.some((n) => !Number.isInteger(n) || n < 2))
      throw new Error("--sizes wants whole numbers of nodes, at least 2, like 100,1000");
    const servers = list(ctx, "servers");
    const runs = num(ctx, "runs");
    const limits = parseLimits(ctx.opts["size-limits"] ?? "");
    const realistic = ctx.opts.clients !== "minimal";
    const split = cpuSplit();
    const loadgenCores = split ? cpuCount(split.loadgen) : availableParallelism();
    const workers = ctx.opts.workers === "auto" ? Math.max(2, loadgenCores) : num(ctx, "workers");
    const churn = num(ctx, "churn");
    if (split) pinSelf(split.loadgen);
    const rows: Row[] = [];
    const raw: Record<string, unknown>[] = [];
    try {
      for (const kind of servers) {
        for (const n of sizes) {
          const results: LoadResult[] = [];
          let version = "";
          for (let i = 0; i < runs; i++) {
            checkAborted(ctx.signal);
            const s = await start(kind, split?.server);
            if ("unavailable" in s) {
              rows.push({ ...summarize(kind, n, []), note: `skipped: ${s.unavailable}` });
              break;
            }
            version = s.version;
            let r: LoadResult;
            try {
              r = await runLoad(s, n, {
                concurrency: num(ctx, "concurrency"),
                limitS: limitFor(n, limits),
                workers,
                loadgenCores,
                signal: ctx.signal,
                log: ctx.log,
                realistic,
                realClients: num(ctx, "real-clients"),
                churn,
                leave: ctx.opts.leave !== "no",
                restart: ctx.opts.restart !== "no",
              });
            } finally {
              await s.stop();
            }
            if (r.error) ctx.log(`${kind} server log, last lines:\n${s.logTail()}`);
            results.push(r);
            raw.push({ server: kind, run: i + 1, ...r });
            ctx.log(runLine(kind, n, i + 1, runs, r));
            // A run that did not complete says enough about this size: do not repeat it.
            if (!r.complete) break;
          }
          if (!results.length) break;
          rows.push(summarize(`${kind} ${version}`, n, results));
          // A size that did not complete says enough about the larger ones: do not wait for them.
          if (!results.every((r) => r.complete)) break;
        }
      }
    } finally {
      if (split) pinSelf(`0-${availableParallelism() - 1}`);
    }
    const kindOf = (r: Row) => r.server.split(" ")[0]!;
    const headlines: { label: string; value: string }[] = [];
    for (const n of sizes) {
      const done = rows.filter((r) => r.nodes === n && r.fullMeshS !== null);
      for (const r of done)
        headlines.push({
          label: `${n} nodes, ${kindOf(r)}: all have N-1 peers (median)`,
          value: `${r.fullMeshS} s, ${r.cpuS} CPU s, ${r.rssMiB} MiB`,
        });
      for (const r of rows.filter((r) => r.nodes === n && r.fullMeshS === null && r.note))
        headlines.push({ label: `${n} nodes, ${kindOf(r)}`, value: r.note.split(" (")[0]! });
      const bi = done.find((r) => kindOf(r) === "builtin");
      const hs = done.filter((r) => kindOf(r).startsWith("headscale")).sort((x, y) => x.fullMeshS! - y.fullMeshS!)[0];
      if (hs && bi)
        headlines.push({
          label: `${n} nodes, builtin / fastest Headscale (${kindOf(hs)}) time`,
          value: String(round(bi.fullMeshS! / hs.fullMeshS!, 2)),
        });
    }
    if (!headlines.length) headlines.push({ label: "measured", value: "nothing (see notes)" });
    const measured = rows.filter((r) => r.fullMeshS !== null);
    const bars: Bar[] = measured.map((r) => ({
      label: `${kindOf(r)} ${r.nodes}`,
      segments: [{ name: kindOf(r), value: r.fullMeshS! }],
      note: `${r.fullMeshS} s, ${r.cpuS} CPU s, ${r.rssMiB} MiB`,
    }));
    return {
      name: "control-plane",
      title: this.title,
      status: rows.some((r) => r.note.startsWith("skipped") || r.note.startsWith("FAILED")) ? "partial" : "ok",
      machine: ctx.machine,
      params: {
        sizes,
        servers,
        concurrency: num(ctx, "concurrency"),
        runs,
        workers,
        sizeLimitsS: Object.fromEntries(sizes.map((n) => [n, limitFor(n, limits)])),
        churn,
        leave: ctx.opts.leave !== "no",
        realClients: num(ctx, "real-clients"),
        clients: realistic ? "realistic" : "minimal",
        pinned: split ?? "no",
      },
      durationS: (Date.now() - t0) / 1000,
      columns: [
        { key: "server", label: "server" },
        { key: "nodes", label: "nodes" },
        { key: "runs", label: "runs" },
        { key: "registeredS", label: "all registered", unit: "s" },
        { key: "fullMeshS", label: "all have N-1 peers", unit: "s" },
        { key: "spread", label: "spread" },
        { key: "cpuS", label: "server CPU", unit: "s" },
        { key: "rssMiB", label: "server peak RSS", unit: "MiB" },
        { key: "kibPerNode", label: "map data per node", unit: "KiB" },
        { key: "resets", label: "stream resets" },
        { key: "joinS", label: "one more joins", unit: "s" },
        { key: "leaveS", label: "one leaves", unit: "s" },
        { key: "churnS", label: `${churn} change endpoints`, unit: "s" },
        { key: "churnKiB", label: "churn data per node", unit: "KiB" },
        { key: "real", label: "real tailscaled see all, median (max)" },
        { key: "restartS", label: "server restart: all have their netmap again", unit: "s" },
        { key: "loadgen", label: "load generator busy at full mesh" },
        { key: "note", label: "" },
      ],
      rows,
      headlines,
      chart: { title: "Time until every simulated node has all N-1 peers", unit: "seconds", bars },
      notes: methodNotes({
        split,
        runs,
        workers,
        realistic,
        churn,
        rows,
        limits: sizes.map((n) => `${n}: ${limitFor(n, limits)} s`).join(", "),
      }),
      raw,
    };
  },
};
