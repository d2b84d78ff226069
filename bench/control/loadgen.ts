import { seededRandom } from "../lib/stats.ts";
import { loadgenBusy, ownerOf, shares, spreadIndices } from "./aggregate.ts";
import { endpointsOf } from "./client-adapter.ts";
import { cpuSeconds, memory } from "./proc.ts";
import { nowMs, type Stats } from "./protocol.ts";
import { type RealClientsResult, timeRealClients } from "./real-clients.ts";
import type { ControlServer } from "./servers.ts";
import { endpointsKey } from "./sim-node.ts";
import { Workers } from "./workers.ts";

export interface LoadResult {
  nodes: number;
  /** From the first registration to the last node holding a map stream. */
  registeredS: number | null;
  /** From the first registration until every node had a netmap with all N-1 peers. */
  fullMeshS: number | null;
  /** Server CPU seconds (user + system) from before the first registration to full mesh. */
  serverCpuS: number;
  serverPeakRssMiB: number;
  /** The load generator (parent and workers) until full mesh: CPU seconds and busy shares. */
  loadgen: { workers: number; cpuS: number; busy: number; busiestWorker: number };
  /** Map bytes each node received until full mesh, on average, as sent (Headscale compresses, builtin does not). */
  mapBytesPerNode: number;
  /** Map streams the server ended (the node polled again), all nodes together, before the restart. */
  streamResets: number;
  /** After full mesh, one more node joins: until it and all n others see each other. */
  joinS: number | null;
  /** One node is deleted: until no other node lists it. */
  leaveS: number | null;
  /** K nodes report new endpoints: until every other node has them, and the map bytes that cost per node. */
  churn: { nodes: number; s: number; bytesPerNode: number } | null;
  /** Then real tailscaled clients join together: each one's time until it lists every other node. */
  real?: RealClientsResult | { unavailable: string };
  /** Last, the server restarts: until every simulated node has a full netmap from it again. */
  restartS: number | null;
  /** Everything asked for finished within the limit. */
  complete: boolean;
  /** The run hit its wall-time limit during `stage` (not an error: the size is too much for the server in that time). */
  timedOut?: { limitS: number; stage: string; progress: string };
  error?: string;
}

export interface LoadOptions {
  concurrency: number;
  /** Wall-time limit of the whole run. */
  limitS: number;
  workers: number;
  /** CPUs the load generator may use (for its busy share). */
  loadgenCores: number;
  signal: AbortSignal;
  log: (s: string) => void;
  realistic: boolean;
  /** Real tailscaled clients to time after the simulated nodes (0: none). */
  realClients: number;
  /** Nodes that change endpoints in the churn scenario (0: no churn). */
  churn: number;
  leave: boolean;
  restart: boolean;
}

class TimedOut extends Error {}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const cpuOf = (s: Stats[], base: Stats[]) => s.map((x, w) => x.cpuS - base[w]!.cpuS);

/**
 * N simulated nodes, driven by worker processes, register with `server` (at most `concurrency`
 * registrations in flight) and each hold a map stream; timed until every node has all N-1
 * peers. Then, on the steady tailnet: one more joins, one leaves, K change endpoints, real
 * tailscaled clients join, and the server restarts; each timed until every node has seen it.
 */
export async function runLoad(server: ControlServer, n: number, o: LoadOptions): Promise<LoadResult> {
  const workers = Workers.start(Math.max(1, Math.min(o.workers, n)));
  const W = workers.count;
  let stage = "starting the load generator's workers";
  const r: LoadResult = {
    nodes: n,
    registeredS: null,
    fullMeshS: null,
    serverCpuS: 0,
    serverPeakRssMiB: 0,
    loadgen: { workers: W, cpuS: 0, busy: 0, busiestWorker: 0 },
    mapBytesPerNode: 0,
    streamResets: 0,
    joinS: null,
    leaveS: null,
    churn: null,
    restartS: null,
    complete: false,
  };
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimedOut()), o.limitS * 1000);
  });
  limit.catch(() => {});
  const onAbort = () => void workers.stop();
  o.signal.addEventListener("abort", onAbort, { once: true });
  const within = <T>(p: Promise<T>) => Promise.race([p, limit]);
  const sinceS = (t0: number, t1 = nowMs()) => (t1 - t0) / 1000;
  try {
    await within(workers.all({ op: "init", serverUrl: server.url, authKey: server.authKey, realistic: o.realistic }));

    stage = `the mass join of ${n} nodes`;
    const base = await within(workers.stats());
    const share = shares(n, W);
    const mesh = await within(workers.watch("mesh", { kind: "peers", atLeast: n - 1 }, (w) => share[w]!));
    const cpu0 = cpuSeconds(server.pid);
    const own0 = process.cpuUsage();
    const t0 = nowMs();
    const perWorker = Math.max(1, Math.ceil(o.concurrency / W));
    await within(workers.all((w) => ({ op: "register", indices: share[w]!, concurrency: perWorker })));
    r.registeredS = sinceS(t0);
    o.log(`${server.kind}: ${n} nodes registered with map streams in ${r.registeredS.toFixed(1)} s (${W} load generator processes)`);
    const meshAt = await within(mesh.done);
    r.serverCpuS = cpuSeconds(server.pid) - cpu0;
    const own = process.cpuUsage(own0);
    const atMesh = await within(workers.stats());
    r.fullMeshS = sinceS(t0, meshAt);
    r.mapBytesPerNode = (sum(atMesh.map((s) => s.bytes)) - sum(base.map((s) => s.bytes))) / n;
    const cpu = { parent: (own.user + own.system) / 1e6, workers: cpuOf(atMesh, base) };
    const busy = loadgenBusy(cpu, sinceS(t0), o.loadgenCores);
    r.loadgen = { workers: W, cpuS: cpu.parent + sum(cpu.workers), busy: busy.total, busiestWorker: busy.busiestWorker };

    stage = "one more node joining";
    const join = await within(workers.watch("join", { kind: "peers", atLeast: n }, (w) => (w === ownerOf(n, W) ? [n] : [])));
    const tj = nowMs();
    await within(workers.call(ownerOf(n, W), { op: "register", indices: [n], concurrency: 1 }));
    r.joinS = sinceS(tj, await within(join.done));
    let simulated = n + 1;

    if (o.leave) {
      stage = "one node leaving";
      const gone = n - 1;
      const [id] = await within(workers.call<(string | null)[]>(ownerOf(gone, W), { op: "ids", indices: [gone] }));
      if (!id) throw new Error(`sim-${gone} never learned its node ID`);
      await within(workers.call(ownerOf(gone, W), { op: "close-node", index: gone }));
      const leave = await within(workers.watch("leave", { kind: "gone", id }));
      const tl = nowMs();
      await within(server.deleteNode(id));
      r.leaveS = sinceS(tl, await within(leave.done));
      simulated--;
    }

    if (o.churn > 0) {
      stage = `${o.churn} nodes changing endpoints`;
      const movers = spreadIndices(n - 1, o.churn);
      const random = seededRandom(n);
      const moves = await within(
        Promise.all(
          movers.map(async (index) => {
            const [id] = await workers.call<(string | null)[]>(ownerOf(index, W), { op: "ids", indices: [index] });
            if (!id) throw new Error(`sim-${index} never learned its node ID`);
            return { index, id, endpoints: endpointsOf(random) };
          }),
        ),
      );
      const before = await within(workers.stats());
      const churn = await within(
        workers.watch("churn", { kind: "endpoints", want: Object.fromEntries(moves.map((m) => [m.id, endpointsKey(m.endpoints)])) }),
      );
      const tc = nowMs();
      await within(
        Promise.all(moves.map((m) => workers.call(ownerOf(m.index, W), { op: "move", index: m.index, endpoints: m.endpoints }))),
      );
      const s = sinceS(tc, await within(churn.done));
      const after = await within(workers.stats());
      r.churn = { nodes: moves.length, s, bytesPerNode: (sum(after.map((x) => x.bytes)) - sum(before.map((x) => x.bytes))) / simulated };
    }

    if (o.realClients > 0) {
      stage = `${o.realClients} real tailscaled clients joining`;
      // Each real client should list every simulated node and the other real ones.
      r.real = server.servesRealClients
        ? await within(timeRealClients(server, o.realClients, simulated + o.realClients - 1))
        : { unavailable: `the ${server.kind} server serves simulated nodes only` };
    }

    r.streamResets = sum((await within(workers.stats())).map((s) => s.resets));
    if (o.restart) {
      stage = "the server restart";
      const fresh = await within(workers.watch("restart", { kind: "fresh", atLeast: simulated - 1 }));
      const tr = nowMs();
      await within(server.restart());
      r.restartS = sinceS(tr, await within(fresh.done));
    }
    r.complete = true;
  } catch (e) {
    const now = await Promise.race([workers.stats(), new Promise<Stats[]>((res) => setTimeout(() => res([]), 5_000))]).catch(() => []);
    if (e instanceof TimedOut) {
      const held = sum(now.map((s) => s.nodes));
      const progress = `${held} nodes held a map stream, ${sum(now.map((s) => s.good))} had got there${r.fullMeshS === null ? "" : "; full mesh was reached"}`;
      r.timedOut = { limitS: o.limitS, stage, progress };
    } else r.error = `${stage}: ${(e as Error).message}`;
    if (!r.streamResets) r.streamResets = sum(now.map((s) => s.resets));
  } finally {
    clearTimeout(timer);
    o.signal.removeEventListener("abort", onAbort);
  }
  r.serverPeakRssMiB = memory(server.pid).peakRss / 2 ** 20;
  await workers.stop();
  return r;
}
