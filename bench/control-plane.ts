import { availableParallelism } from "node:os";
import { repoLoadClient } from "./control/client-adapter.ts";
import { type LoadResult, runLoad } from "./control/loadgen.ts";
import { cpuSplit, pinSelf } from "./control/proc.ts";
import { type ControlServer, HEADSCALE_TUNED, startBuiltin, startHeadscale } from "./control/servers.ts";
import { type Benchmark, checkAborted, list, num } from "./lib/bench.ts";
import { median, round, secs } from "./lib/stats.ts";
import type { Bar } from "./lib/types.ts";

type Row = {
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
  /** Real tailscaled clients: median (max) seconds until each lists every other node. */
  real: string;
  restartS: number | null;
  note: string;
};

async function start(kind: string, cpus: string | undefined): Promise<ControlServer | { unavailable: string }> {
  if (kind === "headscale") return startHeadscale({ cpus });
  if (kind === "headscale-tuned") return startHeadscale({ cpus, tuning: HEADSCALE_TUNED(cpus ? 1 : availableParallelism()) });
  if (kind === "builtin") return startBuiltin({ cpus });
  return { unavailable: `unknown control server "${kind}" (headscale, headscale-tuned, builtin)` };
}

const med = (xs: number[], digits = 2) => (xs.length ? round(median(xs), digits) : null);

/**
 * How busy the load generator was: its CPU seconds over the wall time to full mesh. Near 100%
 * of its CPU, it (not the server) may be what the time measures, and the note says so.
 */
function loadgenNote(done: LoadResult[]): string {
  const busy = median(done.map((r) => r.loadgenCpuS / r.fullMeshS!));
  const cpu = round(median(done.map((r) => r.loadgenCpuS)), 1);
  return `load generator CPU ${cpu} s (${Math.round(busy * 100)}% of the time)${busy > 0.9 ? ": SATURATED, the time may be the load generator's" : ""}`;
}

/** Real clients' times over all runs: "median (max) s", or why there are none. */
function realCell(done: LoadResult[]): string {
  const why = done.map((r) => r.real).find((x) => x && "unavailable" in x);
  if (why && "unavailable" in why) return why.unavailable;
  const ts = done.flatMap((r) => (r.real && "allPeersS" in r.real ? r.real.allPeersS : []));
  return ts.length ? `${secs(median(ts) * 1000)} (${secs(Math.max(...ts) * 1000)}) s` : "";
}

/** One row from several runs of one server at one size: medians, and the spread of the time. */
function summarize(server: string, n: number, rs: LoadResult[]): Row {
  const done = rs.filter((r) => r.complete);
  const times = done.map((r) => r.fullMeshS!);
  const failed = rs.length - done.length;
  return {
    server,
    nodes: n,
    runs: rs.length,
    fullMeshS: med(times),
    spread: times.length > 1 ? `${secs(Math.min(...times) * 1000)}-${secs(Math.max(...times) * 1000)} s` : "",
    registeredS: med(done.map((r) => r.registeredS!)),
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
    joinS: med(done.filter((r) => r.joinS !== null).map((r) => r.joinS!)),
    real: realCell(done),
    restartS: med(done.filter((r) => r.restartS !== null).map((r) => r.restartS!)),
    note:
      (failed ? `INCOMPLETE in ${failed} of ${rs.length} runs: ${rs.find((r) => !r.complete)!.error} ` : "") +
      (done.length ? loadgenNote(done) : ""),
  };
}

/**
 * Control plane at scale: N simulated nodes (our TypeScript client side of the Tailscale control
 * protocol) register with a fresh server on loopback and each hold a map stream; time until
 * every node has a netmap with all N-1 peers; the server's CPU seconds and peak RSS from /proc,
 * the map bytes each node received (as sent: compressed by Headscale, not by the builtin
 * server) and how often a server ended a stream. Server and load generator on separate CPUs
 * where the machine allows; several runs per size, medians and spread.
 */
export const controlPlane: Benchmark = {
  name: "control-plane",
  title: "Control plane at scale: N simulated nodes, Headscale vs builtin",
  minutes:
    "one run of Headscale and builtin at 100/1000/5000 took ~13 min before (5000 hit the 10 min limit); the defaults (three servers, 3 runs) take about 5 times that",
  options: {
    sizes: { default: "100,1000,5000", help: "numbers of simulated nodes" },
    servers: {
      default: "headscale,headscale-tuned,builtin",
      help: "control servers to measure (headscale-tuned: shorter batching, one map worker per CPU)",
    },
    concurrency: { default: "50", help: "registrations in flight at once" },
    "mesh-timeout-s": { default: "600", help: "give up on one size after this long (registrations included)" },
    runs: { default: "3", help: "runs per server and size (medians and spread reported)" },
    restart: { default: "yes", help: "restart the server at the end of each run and time until every node has its netmap again (yes|no)" },
    "real-clients": {
      default: "5",
      help: "real tailscaled clients that join together at the end of each run, timed until each lists every node",
    },
    clients: { default: "realistic", help: "realistic (tailscaled 1.98's recorded Hostinfo, endpoints, a lite update) or minimal" },
  },
  async run(ctx) {
    const t0 = Date.now();
    const sizes = list(ctx, "sizes").map(Number);
    const servers = list(ctx, "servers");
    const runs = num(ctx, "runs");
    const realistic = ctx.opts.clients !== "minimal";
    const client = repoLoadClient();
    const split = cpuSplit();
    if (split) pinSelf(split.loadgen);
    const notes: string[] = [
      `Each run starts a fresh server on 127.0.0.1 (Headscale: the cached pinned binary, plain HTTP, SQLite in a temp directory). ${
        split
          ? `Server pinned to CPU ${split.server}, load generator to CPU ${split.loadgen} (taskset).`
          : "Server and load generator share the machine's cores (one CPU, or no taskset)."
      } ${runs} run(s) per size: medians, and the spread of the time to full mesh. ${
        realistic
          ? "Simulated nodes behave like tailscaled 1.98 as recorded: its Hostinfo (services, NetInfo), a stream request, then a lite update with four endpoints."
          : "Simulated nodes send a minimal Hostinfo and no endpoints (--clients minimal)."
      }`,
      "CPU seconds: the server's user + system time from the first registration until every node has all peers (/proc/PID/stat); peak RSS: VmHWM of /proc/PID/status. KiB/node: map bytes each node received until full mesh, as sent on the wire (Headscale compresses with zstd, the builtin server sends stored frames); resets: map streams the server ended (the node polled again); one more joins: after full mesh, one node registers into the steady tailnet, until it and every other node see each other; real tailscaled: then k real tailscaled 1.98 clients (userspace networking, this host) run tailscale up together, each timed until its tailscale status lists every other node; server restart: last, the server process is stopped and started on the same state, timed until every simulated node has a full netmap from it again (nodes poll again with backoff from 100 ms to 2 s).",
      "Not like for like: Headscale also keeps SQLite, a policy engine and deliberate batching delays (~0.8 s between updates), and closes map streams it considers slow (simulated nodes then poll again, as tailscaled does); the builtin server keeps per-record JSON files, allow-all only, and sends each batch of changes at once.",
    ];
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
            try {
              results.push(
                await runLoad(s, client, n, {
                  concurrency: num(ctx, "concurrency"),
                  timeoutMs: num(ctx, "mesh-timeout-s") * 1000,
                  signal: ctx.signal,
                  log: ctx.log,
                  realistic,
                  realClients: num(ctx, "real-clients"),
                  restart: ctx.opts.restart !== "no",
                }),
              );
            } catch (e) {
              throw new Error(`${kind} with ${n} nodes: ${(e as Error).message}\n${s.logTail()}`);
            } finally {
              await s.stop();
            }
            const r = results.at(-1)!;
            raw.push({ server: kind, run: i + 1, ...r });
            ctx.log(
              `${kind} ${n} nodes, run ${i + 1}/${runs}: full mesh ${r.fullMeshS?.toFixed(1) ?? "never"} s, CPU ${r.serverCpuS.toFixed(1)} s, ` +
                `peak RSS ${Math.round(r.serverPeakRssMiB)} MiB, ${Math.round(r.mapBytesPerNode / 1024)} KiB/node, ${r.streamResets} resets, ` +
                `one more joins in ${r.joinS?.toFixed(2) ?? "never"} s` +
                (r.real && "allPeersS" in r.real
                  ? `, real clients see all in ${r.real.allPeersS.map((x) => x.toFixed(1)).join("/")} s`
                  : "") +
                (r.restartS !== null ? `, netmaps back ${r.restartS.toFixed(1)} s after a restart` : ""),
            );
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
    const headlines: { label: string; value: string }[] = [];
    const kindOf = (r: Row) => r.server.split(" ")[0]!;
    for (const n of sizes) {
      const done = rows.filter((r) => r.nodes === n && r.fullMeshS !== null);
      for (const r of done)
        headlines.push({
          label: `${n} nodes, ${kindOf(r)}: all have N-1 peers (median)`,
          value: `${r.fullMeshS} s, ${r.cpuS} CPU s, ${r.rssMiB} MiB`,
        });
      const bi = done.find((r) => kindOf(r) === "builtin");
      const hs = done.filter((r) => kindOf(r).startsWith("headscale")).sort((x, y) => x.fullMeshS! - y.fullMeshS!)[0];
      if (hs && bi)
        headlines.push({
          label: `${n} nodes, builtin / fastest Headscale (${kindOf(hs)}) time`,
          value: String(round(bi.fullMeshS! / hs.fullMeshS!, 2)),
        });
    }
    if (!headlines.length) headlines.push({ label: "measured", value: "nothing yet (see notes)" });
    if (rows.some((r) => kindOf(r).startsWith("headscale") && /Protocol error/.test(r.note)))
      notes.push(
        'Against Headscale the load client fails right after the Noise handshake (HTTP/2 "Protocol error"): Headscale sends Tailscale\'s optional early payload ' +
          "(5 bytes \\xff\\xff\\xffTS, a 4-byte big-endian length, EarlyNoise JSON) before HTTP/2, which src/control/client.ts does not skip yet.",
      );
    const measured = rows.filter((r) => r.fullMeshS !== null);
    const bars: Bar[] = measured.length
      ? measured.map((r) => ({
          label: `${r.server.split(" ")[0]} ${r.nodes}`,
          segments: [{ name: r.server.split(" ")[0]!, value: r.fullMeshS! }],
          note: `${r.fullMeshS} s, ${r.cpuS} CPU s, ${r.rssMiB} MiB`,
        }))
      : rows
          .filter((r) => r.rssMiB !== null)
          .map((r) => ({ label: `${r.server} idle`, segments: [{ name: "", value: r.rssMiB! }], note: `${r.rssMiB} MiB (idle)` }));
    return {
      name: "control-plane",
      title: this.title,
      status:
        "unavailable" in client || rows.some((r) => r.note.startsWith("skipped") || r.note.startsWith("INCOMPLETE")) ? "partial" : "ok",
      machine: ctx.machine,
      params: {
        sizes,
        servers,
        concurrency: num(ctx, "concurrency"),
        runs,
        clients: realistic ? "realistic" : "minimal",
        pinned: split ?? "no",
      },
      durationS: (Date.now() - t0) / 1000,
      columns: [
        { key: "server", label: "server" },
        { key: "nodes", label: "nodes" },
        { key: "registeredS", label: "all registered", unit: "s" },
        { key: "runs", label: "runs" },
        { key: "fullMeshS", label: "all have N-1 peers", unit: "s" },
        { key: "spread", label: "spread" },
        { key: "cpuS", label: "server CPU", unit: "s" },
        { key: "rssMiB", label: "server peak RSS", unit: "MiB" },
        { key: "joinS", label: "one more joins", unit: "s" },
        { key: "real", label: "real tailscaled see all, median (max)" },
        { key: "restartS", label: "server restart: all have their netmap again", unit: "s" },
        { key: "kibPerNode", label: "map data per node", unit: "KiB" },
        { key: "resets", label: "stream resets" },
        { key: "note", label: "" },
      ],
      rows,
      headlines,
      chart: measured.length
        ? { title: "Time until every simulated node has all N-1 peers", unit: "seconds", bars }
        : { title: "Control servers idle after start-up (load client not wired yet)", unit: "MiB peak RSS", bars },
      notes,
      raw,
    };
  },
};
