import { join } from "node:path";
import { cleanup, HostTailscaled, tailscaleBins, tempDir } from "../../tests/integration/tailscaled-host.ts";
import { eventually } from "../../tests/support/eventually.ts";
import { TIMEOUT } from "../../tests/support/timeouts.ts";
import type { ControlServer } from "./servers.ts";

export interface RealClientsResult {
  /** Per real client: seconds from `tailscale up` until its status lists every other node. */
  allPeersS: number[];
}

/**
 * `k` real tailscaled 1.98 processes (userspace networking, on this host) join a tailnet the
 * simulated nodes already fill, all at once; each is timed from `tailscale up` until its
 * `tailscale status` lists `expectPeers` peers. What a person adding machines would wait for.
 */
export async function timeRealClients(
  server: ControlServer,
  k: number,
  expectPeers: number,
): Promise<RealClientsResult | { unavailable: string }> {
  const bins = tailscaleBins();
  if (!bins) return { unavailable: "the pinned tailscale binaries are not built (./start.ts setup)" };
  const dir = tempDir("wg3-bench-real-");
  const clients = Array.from({ length: k }, (_, i) => new HostTailscaled(`real-${i}`, join(dir, `real-${i}`), bins));
  try {
    await Promise.all(clients.map((c) => c.start()));
    const allPeersS = await Promise.all(clients.map((c) => timeOne(c, server, expectPeers)));
    return { allPeersS };
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    cleanup(dir);
  }
}

async function timeOne(c: HostTailscaled, server: ControlServer, expectPeers: number): Promise<number> {
  const t0 = performance.now();
  const up = await c.cli(
    ["up", `--login-server=${server.url}`, `--auth-key=${server.authKey}`, `--hostname=${c.name}`, "--timeout=120s"],
    150_000,
  );
  if (up.exitCode !== 0) throw new Error(`${c.name}: tailscale up failed: ${String(up.all).slice(-300)}`);
  await eventually(`${c.name} lists ${expectPeers} peers`, async () => Object.keys((await c.status()).Peer ?? {}).length >= expectPeers, {
    timeout: TIMEOUT.recovery,
    seen: () => c.tail(5),
  });
  return (performance.now() - t0) / 1000;
}
