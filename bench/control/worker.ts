/**
 * One load-generator worker process: drives its share of the simulated nodes for the parent
 * (bench/control/loadgen.ts), which asks over IPC (protocol.ts). It reports, stamped with its
 * own clock, whenever all of its nodes come to satisfy (or stop satisfying) the phase's watch;
 * the parent takes the latest of the workers' reports.
 */
import { setMaxListeners } from "node:events";
import { repoLoadClient, type SimulatedNode } from "./client-adapter.ts";
import { ScanCache } from "./map-scan.ts";
import { type FromWorker, nowMs, type Request, type Stats } from "./protocol.ts";
import { applyMap, beginWatch, type NodeState, newNodeState, satisfies, type Watch } from "./sim-node.ts";

const client = repoLoadClient();
const abort = new AbortController();
setMaxListeners(0, abort.signal);
let server: { serverUrl: string; authKey: string; realistic: boolean } | undefined;

const states = new Map<number, NodeState>();
const nodes = new Map<number, SimulatedNode>();
/** Nodes that count in the watch: asked to register and not closed. */
const expected = new Set<number>();
const good = new Set<number>();
let phase = "";
let watch: Watch | undefined;
let reportedOk: boolean | undefined;
const stats = { bytes: 0, resets: 0 };
const scans = new ScanCache();

function send(m: FromWorker): void {
  process.send?.(m);
}

function report(): void {
  const ok = good.size === expected.size;
  if (ok === reportedOk) return;
  reportedOk = ok;
  send({ ev: "phase", phase, ok, at: nowMs() });
}

function judge(i: number): void {
  const s = states.get(i);
  if (s && watch && expected.has(i) && satisfies(s, watch)) good.add(i);
  else good.delete(i);
}

async function startNode(i: number): Promise<void> {
  if (!server) throw new Error("init first");
  const s = newNodeState();
  states.set(i, s);
  nodes.set(
    i,
    await client.startNode({
      serverUrl: server.serverUrl,
      authKey: server.authKey,
      hostname: `sim-${i}`,
      realistic: server.realistic,
      onMessage: (frame) => {
        // Peers' endpoints matter only while the phase waits for new ones.
        applyMap(s, scans.scan(frame, watch?.kind === "endpoints"), watch);
        judge(i);
        report();
      },
      onBytes: (b) => {
        stats.bytes += b;
      },
      onReset: () => {
        stats.resets++;
      },
      signal: abort.signal,
    }),
  );
}

async function register(indices: number[], concurrency: number): Promise<void> {
  for (const i of indices) expected.add(i);
  report();
  let next = 0;
  const lane = async () => {
    while (next < indices.length && !abort.signal.aborted) await startNode(indices[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, indices.length)) }, lane));
}

async function handle(r: Request): Promise<unknown> {
  switch (r.op) {
    case "init":
      server = { serverUrl: r.serverUrl, authKey: r.authKey, realistic: r.realistic };
      return;
    case "register":
      return register(r.indices, r.concurrency);
    case "watch":
      phase = r.phase;
      watch = r.watch;
      for (const i of r.expecting ?? []) expected.add(i);
      reportedOk = undefined;
      for (const s of states.values()) beginWatch(s);
      for (const i of expected) judge(i);
      report();
      return;
    case "ids":
      return r.indices.map((i) => states.get(i)?.id ?? null);
    case "move":
      return nodes.get(r.index)?.moveTo(r.endpoints);
    case "close-node": {
      expected.delete(r.index);
      good.delete(r.index);
      await nodes.get(r.index)?.close();
      nodes.delete(r.index);
      report();
      return;
    }
    case "stats": {
      const c = process.cpuUsage();
      return { ...stats, cpuS: (c.user + c.system) / 1e6, nodes: nodes.size, good: good.size } satisfies Stats;
    }
    case "exit":
      abort.abort();
      await Promise.all([...nodes.values()].map((n) => n.close().catch(() => {})));
      setImmediate(() => process.exit(0));
      return;
  }
}

process.on("message", (m: Request & { seq: number }) => {
  handle(m).then(
    (data) => send({ seq: m.seq, ok: true, data }),
    (e: Error) => send({ seq: m.seq, ok: false, error: e.message }),
  );
});
process.on("disconnect", () => process.exit(0));
