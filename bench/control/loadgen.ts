import { setMaxListeners } from "node:events";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT } from "../../src/paths.ts";
import { cpuSeconds, memory } from "./proc.ts";
import type { ControlServer } from "./servers.ts";

/**
 * What the load generator needs from a Tailscale control-protocol client. The client itself
 * is NOT written here: it comes from src/control/client.ts (issue 6, reusing the server's
 * Noise, key and framing code). bench/control/client-adapter.ts turns that module into this.
 */
export interface SimulatedNode {
  /** End the map stream and the Noise connection. */
  close(): Promise<void>;
}

export interface LoadClient {
  /**
   * Register one new node (fresh machine, node and disco keys) with `authKey` over
   * POST /ts2021 (Noise) + /machine/register, then hold a streaming POST /machine/map
   * (Stream: true). After every map response (full netmap or incremental PeersChanged /
   * PeersRemoved / lite update) call `onPeers` with how many peers the node knows now.
   */
  startNode(opts: {
    serverUrl: string;
    authKey: string;
    hostname: string;
    onPeers: (count: number) => void;
    signal: AbortSignal;
  }): Promise<SimulatedNode>;
}

export const CLIENT_MODULE = join(ROOT, "src", "control", "client.ts");

/** The repository's client, adapted, or why there is none yet. */
export async function repoLoadClient(): Promise<LoadClient | { unavailable: string }> {
  if (!existsSync(CLIENT_MODULE)) return { unavailable: "src/control/client.ts does not exist yet (issue 6)" };
  const mod: Record<string, unknown> = await import(pathToFileURL(CLIENT_MODULE).href);
  // Imported only now, so that the benchmark still runs (and says why) without the client.
  const { adaptClient } = await import("./client-adapter.ts");
  return adaptClient(mod);
}

export interface LoadResult {
  nodes: number;
  /** From the first registration to the last node holding a map stream. */
  registeredS: number | null;
  /** From the first registration until every node had a netmap with all N-1 peers. */
  fullMeshS: number | null;
  /** Server CPU seconds (user + system) from before the first registration to full mesh. */
  serverCpuS: number;
  serverPeakRssMiB: number;
  /** The load generator's own CPU seconds (it shares the machine). */
  loadgenCpuS: number;
  complete: boolean;
  error?: string;
}

/**
 * Register `n` simulated nodes (at most `concurrency` registrations in flight), each holding a
 * map stream, and time until every node has seen all n-1 peers; measure the server from /proc.
 */
export async function runLoad(
  server: ControlServer,
  client: LoadClient,
  n: number,
  opts: { concurrency: number; timeoutMs: number; signal: AbortSignal; log: (s: string) => void },
): Promise<LoadResult> {
  const peers = new Array<number>(n).fill(0);
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
  let error: string | undefined;
  let allFull!: () => void;
  const allFullP = new Promise<void>((r) => {
    allFull = r;
  });
  const onPeers = (i: number) => (count: number) => {
    const was = peers[i]! >= n - 1;
    peers[i] = count;
    const is = count >= n - 1;
    if (is && !was) full++;
    if (!is && was) full--;
    if (full === n && fullAt === undefined) {
      fullAt = performance.now();
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
            signal: abort.signal,
          }),
        );
      }
    };
    await Promise.race([Promise.all(Array.from({ length: Math.min(opts.concurrency, n) }, worker)), deadline]);
    registeredAt = performance.now();
    opts.log(`${server.kind}: ${n} nodes registered with map streams in ${((registeredAt - t0) / 1000).toFixed(1)} s`);
    await Promise.race([allFullP, deadline]);
  } catch (e) {
    error = (e as Error).message;
  } finally {
    clearTimeout(timer);
    opts.signal.removeEventListener("abort", onOuterAbort);
  }
  const serverCpuS = cpuSeconds(server.pid) - cpu0;
  const peak = memory(server.pid).peakRss;
  const own = process.cpuUsage(own0);
  abort.abort();
  await Promise.all(nodes.map((x) => x.close().catch(() => {})));
  return {
    nodes: n,
    registeredS: registeredAt === undefined ? null : (registeredAt - t0) / 1000,
    fullMeshS: fullAt === undefined ? null : (fullAt - t0) / 1000,
    serverCpuS,
    serverPeakRssMiB: peak / 2 ** 20,
    loadgenCpuS: (own.user + own.system) / 1e6,
    complete: fullAt !== undefined,
    error,
  };
}
