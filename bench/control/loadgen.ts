import { setMaxListeners } from "node:events";
import type { LoadClient, SimulatedNode } from "./client-adapter.ts";
import { cpuSeconds, memory } from "./proc.ts";
import { type RealClientsResult, timeRealClients } from "./real-clients.ts";
import type { ControlServer } from "./servers.ts";

export interface LoadResult {
  nodes: number;
  /** From the first registration to the last node holding a map stream. */
  registeredS: number | null;
  /** From the first registration until every node had a netmap with all N-1 peers. */
  fullMeshS: number | null;
  /** Server CPU seconds (user + system) from before the first registration to full mesh. */
  serverCpuS: number;
  serverPeakRssMiB: number;
  /** The load generator's own CPU seconds until full mesh. */
  loadgenCpuS: number;
  /** Map bytes each node received until full mesh, on average, as sent (Headscale compresses, builtin does not). */
  mapBytesPerNode: number;
  /** Map streams the server ended (the node polled again), all nodes together. */
  streamResets: number;
  /** After full mesh, one more node joins: until it and all n others see each other. */
  joinS: number | null;
  /** Then real tailscaled clients join together: each one's time until it lists every other node. */
  real?: RealClientsResult | { unavailable: string };
  /** Last, the server restarts: until every simulated node has a full netmap from it again. */
  restartS: number | null;
  complete: boolean;
  error?: string;
}

/**
 * Register `n` simulated nodes (at most `concurrency` registrations in flight), each holding a
 * map stream, and time until every node has seen all n-1 peers; then let one more node join the
 * steady tailnet and time until everyone sees everyone; measure the server from /proc.
 */
export async function runLoad(
  server: ControlServer,
  client: LoadClient,
  n: number,
  opts: {
    concurrency: number;
    timeoutMs: number;
    signal: AbortSignal;
    log: (s: string) => void;
    realistic?: boolean;
    /** Real tailscaled clients to time after the simulated nodes (0: none). */
    realClients?: number;
    /** Restart the server at the end and time the recovery. */
    restart?: boolean;
  },
): Promise<LoadResult> {
  // One slot more, for the node that joins the steady tailnet at the end.
  const peers = new Array<number>(n + 1).fill(0);
  let joined = 0;
  // Nodes that got a full netmap since the restart began (undefined: not restarting).
  let refreshed: Set<number> | undefined;
  let allRefreshed!: () => void;
  const allRefreshedP = new Promise<void>((r) => {
    allRefreshed = r;
  });
  const onFullMap = (i: number) => () => {
    if (!refreshed) return;
    refreshed.add(i);
    if (refreshed.size === n + 1) allRefreshed();
  };
  let allJoined!: () => void;
  const allJoinedP = new Promise<void>((r) => {
    allJoined = r;
  });
  let bytes = 0;
  let resets = 0;
  let bytesAtFull: number | undefined;
  let cpuAtFull: number | undefined;
  let ownAtFull: NodeJS.CpuUsage | undefined;
  let full = 0;
  let fullAt: number | undefined;
  const nodes: SimulatedNode[] = [];
  const abort = new AbortController();
  // Every simulated node listens on this one signal.
  setMaxListeners(0, abort.signal);
  const onOuterAbort = () => abort.abort();
  opts.signal.addEventListener("abort", onOuterAbort, { once: true });
  const cpu0 = cpuSeconds(server.pid);
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  let registeredAt: number | undefined;
  let joinS: number | null = null;
  let real: LoadResult["real"];
  let restartS: number | null = null;
  let resetsBeforeRestart: number | undefined;
  let error: string | undefined;
  let allFull!: () => void;
  const allFullP = new Promise<void>((r) => {
    allFull = r;
  });
  const onPeers = (i: number) => (count: number) => {
    const [was, wasJoined] = [peers[i]! >= n - 1, peers[i]! >= n];
    peers[i] = count;
    const [is, isJoined] = [count >= n - 1, count >= n];
    if (i < n && is !== was) full += is ? 1 : -1;
    // n peers is only possible once the joiner exists.
    if (isJoined !== wasJoined) joined += isJoined ? 1 : -1;
    if (joined === n + 1) allJoined();
    if (full === n && fullAt === undefined) {
      fullAt = performance.now();
      bytesAtFull = bytes;
      cpuAtFull = cpuSeconds(server.pid);
      ownAtFull = process.cpuUsage(own0);
      allFull();
    }
  };
  // One deadline for the whole size, registrations included.
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abort.abort();
      reject(new Error(`after ${opts.timeoutMs / 1000} s: ${nodes.length} of ${n} nodes registered, ${full} saw all ${n - 1} peers`));
    }, opts.timeoutMs);
  });
  deadline.catch(() => {});
  try {
    let next = 0;
    const worker = async () => {
      while (next < n && !abort.signal.aborted) {
        const i = next++;
        nodes.push(
          await client.startNode({
            serverUrl: server.url,
            authKey: server.authKey,
            hostname: `sim-${i}`,
            onPeers: onPeers(i),
            onFullMap: onFullMap(i),
            realistic: opts.realistic,
            onBytes: (b) => {
              bytes += b;
            },
            onReset: () => {
              resets++;
            },
            signal: abort.signal,
          }),
        );
      }
    };
    await Promise.race([Promise.all(Array.from({ length: Math.min(opts.concurrency, n) }, worker)), deadline]);
    registeredAt = performance.now();
    opts.log(`${server.kind}: ${n} nodes registered with map streams in ${((registeredAt - t0) / 1000).toFixed(1)} s`);
    await Promise.race([allFullP, deadline]);
    const joinStart = performance.now();
    nodes.push(
      await client.startNode({
        serverUrl: server.url,
        authKey: server.authKey,
        hostname: "sim-join",
        onPeers: onPeers(n),
        onFullMap: onFullMap(n),
        realistic: opts.realistic,
        signal: abort.signal,
      }),
    );
    await Promise.race([allJoinedP, deadline]);
    joinS = (performance.now() - joinStart) / 1000;
    const k = opts.realClients ?? 0;
    // Each real client should list the n+1 simulated nodes and the other k-1 real ones.
    if (k > 0) real = await Promise.race([timeRealClients(server, k, n + k), deadline]);
    if (opts.restart) {
      resetsBeforeRestart = resets; // a restart ends every stream: not counted as resets
      const r0 = performance.now();
      refreshed = new Set();
      await Promise.race([server.restart(), deadline]);
      await Promise.race([allRefreshedP, deadline]);
      restartS = (performance.now() - r0) / 1000;
    }
  } catch (e) {
    error = (e as Error).message;
  } finally {
    clearTimeout(timer);
    opts.signal.removeEventListener("abort", onOuterAbort);
  }
  const serverCpuS = (cpuAtFull ?? cpuSeconds(server.pid)) - cpu0;
  const peak = memory(server.pid).peakRss;
  const own = ownAtFull ?? process.cpuUsage(own0);
  abort.abort();
  await Promise.all(nodes.map((x) => x.close().catch(() => {})));
  return {
    nodes: n,
    registeredS: registeredAt === undefined ? null : (registeredAt - t0) / 1000,
    fullMeshS: fullAt === undefined ? null : (fullAt - t0) / 1000,
    serverCpuS,
    serverPeakRssMiB: peak / 2 ** 20,
    loadgenCpuS: (own.user + own.system) / 1e6,
    mapBytesPerNode: (bytesAtFull ?? bytes) / n,
    streamResets: resetsBeforeRestart ?? resets,
    joinS,
    real,
    restartS,
    complete: fullAt !== undefined,
    error,
  };
}
