import { versions } from "../src/versions.ts";
import { eventually } from "../tests/support/eventually.ts";
import { LabHandle } from "../tests/support/lab-handle.ts";
import { TIMEOUT } from "../tests/support/timeouts.ts";
import { type BenchContext, type Benchmark, checkAborted, num, warmEngine } from "./lib/bench.ts";
import { BENCH_LAB, RECIPE3_MESH_CHECKS, waitGreen } from "./lib/labs.ts";
import { median, round } from "./lib/stats.ts";

const PORT = 5201;

interface Path {
  pair: string;
  path: "tunnel" | "plain";
  /** What the bytes cross, in words. */
  via: string;
  /** A tunnel's implementation, when the pair has several. */
  impl?: string;
  mbps: number[];
}

/** The interface the kernel of `node` would send a packet to `ip` through. */
async function routeDev(lab: LabHandle, node: string, ip: string): Promise<string> {
  const r = await lab.sh(node, `ip -o route get ${ip}`);
  return /\sdev\s(\S+)/.exec(r.stdout)?.[1] ?? `? (${(r.stdout + r.stderr).trim()})`;
}

/** One TCP iperf3 run from `client` to `target` (iperf3 -s one-off on `server`), in Mbit/s. */
async function iperf(lab: LabHandle, server: string, client: string, target: string, seconds: number): Promise<number> {
  await lab.sh(server, `pkill -x iperf3; iperf3 -s -1 -D -p ${PORT}`);
  await eventually(`iperf3 listening on ${server}`, async () => lab.succeeds(server, `ss -ltn | grep -q ':${PORT} '`), {
    timeout: TIMEOUT.short,
  });
  const r = await lab.sh(client, `iperf3 -c ${target} -p ${PORT} -t ${seconds} -J --connect-timeout 3000`);
  let j: { error?: string; end?: { sum_received?: { bits_per_second?: number } } };
  try {
    j = JSON.parse(r.stdout);
  } catch {
    throw new Error(`iperf3 ${client} -> ${target} printed no JSON (exit ${r.exitCode}): ${(r.stdout + r.stderr).slice(-400)}`);
  }
  const bps = j.end?.sum_received?.bits_per_second;
  if (j.error || !bps) throw new Error(`iperf3 ${client} -> ${target} failed: ${j.error ?? "no result"}`);
  return bps / 1e6;
}

/** Alternate plain and tunnel runs so both see the same machine state. */
async function measure(
  ctx: BenchContext,
  lab: LabHandle,
  paths: { p: Path; server: string; client: string; target: string }[],
  runs = num(ctx, "iperf-runs"),
) {
  const secs = num(ctx, "iperf-seconds");
  for (let i = 0; i < runs; i++)
    for (const x of paths) {
      checkAborted(ctx.signal);
      x.p.mbps.push(round(await iperf(lab, x.server, x.client, x.target, secs), 1));
      ctx.log(`${x.p.pair} ${x.p.path}: ${x.p.mbps.at(-1)} Mbit/s`);
    }
}

/** The WireGuard implementations recipe-0 can run, by how wg-quick is told to pick one. */
const WIREGUARD_IMPLS = [
  // wg-quick tries the kernel first, then /usr/bin/wireguard-go: our pinned build, where Go built it.
  { name: "pinned", env: "" },
  { name: "debian", env: "WG_QUICK_USERSPACE_IMPLEMENTATION=/usr/bin/wireguard-go.debian " },
] as const;
type WireguardImpl = (typeof WIREGUARD_IMPLS)[number];

/** What runs recipe-0's interface on `node`, as the node itself reports it: the kernel, or which wireguard-go binary and its version. */
async function wireguardRunning(lab: LabHandle, node: string): Promise<string> {
  const r = await lab.sh(
    node,
    'p=$(pgrep -x wireguard-go | head -n1); if [ -n "$p" ]; then e=$(readlink /proc/$p/exe); echo "$($e --version | head -n1) ($e)"; ' +
      "elif ip -d link show recipe-0 | grep -qw wireguard; then echo kernel; else echo none; fi",
  );
  return r.stdout.trim();
}

/** Bring recipe-0 up again on both ends of the measured pair with `impl`; returns what each end then runs. */
async function useWireguard(lab: LabHandle, impl: WireguardImpl, peerIp: string): Promise<string> {
  const running: string[] = [];
  for (const node of ["peer-1", "peer-2"]) {
    const r = await lab.sh(node, `wg-quick down recipe-0 >/dev/null 2>&1; ${impl.env}wg-quick up recipe-0 2>&1`);
    if (r.exitCode !== 0) throw new Error(`wg-quick up recipe-0 (${impl.name}) on ${node} failed: ${r.stdout.slice(-300)}`);
    running.push(await wireguardRunning(lab, node));
  }
  if (running[0] !== running[1]) throw new Error(`the pair runs different WireGuards: ${running.join(" and ")}`);
  await eventually(`${peerIp} answering through the tunnel (${impl.name})`, () => lab.succeeds("peer-1", `ping -c1 -W1 ${peerIp}`), {
    timeout: TIMEOUT.short,
  });
  return running[0]!;
}

/**
 * recipe-0 after solve: peer-1 -> peer-2 over the bridge and over WireGuard, once with each
 * implementation (the kernel's where the host has the module, so then once).
 */
async function wireguardPair(ctx: BenchContext): Promise<Path[]> {
  const lab = await LabHandle.start("recipe-0", { lab: BENCH_LAB });
  try {
    const wgIp = "172.16.100.2";
    const bridgeIp = lab.ip("peer-2", "mesh");
    // Negative control: before the tunnel exists, its address does not answer.
    if (await lab.succeeds("peer-1", `ping -c1 -W1 ${wgIp}`)) throw new Error(`${wgIp} answers before recipe-0 is solved`);
    await lab.solve();
    await waitGreen(lab);
    const devTunnel = await routeDev(lab, "peer-1", wgIp);
    const devPlain = await routeDev(lab, "peer-1", bridgeIp);
    if (devTunnel !== "recipe-0" || devPlain === "recipe-0")
      throw new Error(`unexpected routes: ${wgIp} via ${devTunnel}, ${bridgeIp} via ${devPlain}`);
    const pair = "WireGuard peers (recipe-0)";
    const plain: Path = { pair, path: "plain", via: `bridge ${devPlain}, ${bridgeIp}`, mbps: [] };
    const tunnels = new Map<WireguardImpl, Path>();
    for (const impl of WIREGUARD_IMPLS) {
      const running = await useWireguard(lab, impl, wgIp);
      if ([...tunnels.values()].some((t) => t.impl === running)) continue; // the kernel, already measured
      tunnels.set(impl, { pair, path: "tunnel", via: `${running}, ${devTunnel}, ${wgIp}`, impl: running, mbps: [] });
    }
    const rx = async () => Number((await lab.sh("peer-2", "wg show recipe-0 transfer | awk '{s+=$2} END {print s+0}'")).stdout.trim());
    for (let i = 0; i < num(ctx, "iperf-runs"); i++) {
      await measure(ctx, lab, [{ p: plain, server: "peer-2", client: "peer-1", target: bridgeIp }], 1);
      for (const [impl, tunnel] of tunnels) {
        await useWireguard(lab, impl, wgIp);
        // Proof that the run crossed WireGuard: peer-2 received at least 1 MB on it (counters restart with the interface).
        const before = await rx();
        await measure(ctx, lab, [{ p: tunnel, server: "peer-2", client: "peer-1", target: wgIp }], 1);
        if ((await rx()) - before < 1e6) throw new Error(`the WireGuard transfer counters did not grow with the ${impl.name} run`);
      }
    }
    return [plain, ...tunnels.values()];
  } finally {
    await lab.stop();
  }
}

/**
 * recipe-3: home client -> roaming client over Tailscale (tailscaled's wireguard-go, TUN), and
 * the same pair over the plain underlay: home -> home router (NAT) -> roaming, the very path
 * the Tailscale packets take, without the tunnel. (Home initiates: like a real home router,
 * nothing lets a connection from the internet into the home LAN.)
 */
async function tailscalePair(ctx: BenchContext): Promise<{ paths: Path[]; how: string }> {
  const lab = await LabHandle.start("recipe-3", { lab: BENCH_LAB });
  try {
    await waitGreen(lab, RECIPE3_MESH_CHECKS);
    const home = lab.tailscale("ts-client-home");
    const tsIp = await lab.tailscale("ts-client-roaming").ip();
    const underlayIp = lab.ip("ts-client-roaming", "roaming");
    const devTunnel = await routeDev(lab, "ts-client-home", tsIp);
    const devPlain = await routeDev(lab, "ts-client-home", underlayIp);
    if (devTunnel !== "tailscale0" || devPlain === "tailscale0")
      throw new Error(`unexpected routes: ${tsIp} via ${devTunnel}, ${underlayIp} via ${devPlain}`);
    const how = (await home.tsPing(tsIp)).path;
    const pair = "Tailscale clients (recipe-3)";
    const tunnel: Path = { pair, path: "tunnel", via: `tailscale0 (${how}), ${tsIp}`, mbps: [] };
    const plain: Path = { pair, path: "plain", via: `${devPlain} -> home router NAT -> ${underlayIp}`, mbps: [] };
    const rx = async () => Number((await lab.sh("ts-client-roaming", "cat /sys/class/net/tailscale0/statistics/rx_bytes")).stdout.trim());
    const before = await rx();
    await measure(ctx, lab, [
      { p: plain, server: "ts-client-roaming", client: "ts-client-home", target: underlayIp },
      { p: tunnel, server: "ts-client-roaming", client: "ts-client-home", target: tsIp },
    ]);
    // Proof that the tunnel runs crossed Tailscale: roaming's tailscale0 received at least 1 MB per run.
    if ((await rx()) - before < tunnel.mbps.length * 1e6) throw new Error("tailscale0 on roaming did not receive the tunnel runs' bytes");
    return { paths: [plain, tunnel], how };
  } finally {
    await lab.stop();
  }
}

export const dataplane: Benchmark = {
  name: "dataplane",
  title: "Data plane: iperf3 through the tunnel vs the plain network",
  minutes: "~1.5 min with 3 runs of 5 s",
  options: {
    "iperf-runs": { default: "3", help: "iperf3 runs per path (median)" },
    "iperf-seconds": { default: "5", help: "seconds per iperf3 run" },
  },
  async run(ctx) {
    const t0 = Date.now();
    await warmEngine(ctx, { allowRunning: true });
    const notes: string[] = [];
    const paths: Path[] = [];
    paths.push(...(await wireguardPair(ctx)));
    checkAborted(ctx.signal);
    const ts = await tailscalePair(ctx);
    paths.push(...ts.paths);
    const rows = paths.map((p) => {
      const plain = paths.find((q) => q.pair === p.pair && q.path === "plain")!;
      return {
        pair: p.pair,
        path: p.path,
        impl: p.impl ?? null,
        via: p.via,
        mbps: median(p.mbps),
        runs: p.mbps.join(" / "),
        ratio: round(median(p.mbps) / median(plain.mbps), 3),
      };
    });
    const tunnelRows = (pair: string) => rows.filter((r) => r.pair === pair && r.path === "tunnel");
    notes.push(
      "TCP, one stream, `iperf3 -c TARGET -t SECONDS -J`, receiver's rate; median of the runs. Plain and tunnel runs alternate.",
      "Every process shares the machine's 2 cores: iperf3 on both ends and a userspace WireGuard (where the host has no kernel module) all compete for CPU, so the tunnel numbers are CPU-bound.",
      `recipe-0 is measured with each WireGuard wg-quick can run: the pinned wireguard-go (${versions["wireguard-go"]}, built from the Go module proxy, with TUN segmentation offloads) as /usr/bin/wireguard-go, and Debian's older package, kept as /usr/bin/wireguard-go.debian (WG_QUICK_USERSPACE_IMPLEMENTATION). Which one ran is read from the peers (the interface's process, its executable and that executable's --version), not assumed; with a kernel module wg-quick uses that, and there is one tunnel row.`,
      "Each pair's path is proven: `ip route get` shows the tunnel interface for the tunnel address and not for the plain one, and the receiving tunnel interface's counters grow by the tunnel runs; recipe-0's tunnel address does not answer before the solution (negative control).",
      "recipe-3's pair is home client -> roaming client; the plain path is home -> home router (NAT) -> roaming, the underlay the Tailscale packets cross.",
      "tailscaled carries Tailscale's own fork of wireguard-go (with segmentation offloads).",
      `recipe-3's path between the clients was ${ts.how.toUpperCase()} (tailscale ping).`,
    );
    return {
      name: "dataplane",
      title: this.title,
      status: "ok",
      machine: ctx.machine,
      params: { runs: num(ctx, "iperf-runs"), seconds: num(ctx, "iperf-seconds") },
      durationS: (Date.now() - t0) / 1000,
      columns: [
        { key: "pair", label: "pair" },
        { key: "path", label: "path" },
        { key: "via", label: "via" },
        { key: "mbps", label: "throughput", unit: "Mbit/s" },
        { key: "ratio", label: "tunnel / plain" },
        { key: "runs", label: "all runs", unit: "Mbit/s" },
      ],
      rows,
      headlines: [
        ...tunnelRows("WireGuard peers (recipe-0)").map((r) => ({ label: `WireGuard (${r.impl}) / plain bridge`, value: String(r.ratio) })),
        ...tunnelRows("Tailscale clients (recipe-3)").map((r) => ({ label: "Tailscale / plain underlay", value: String(r.ratio) })),
      ],
      chart: {
        title: "iperf3 TCP throughput, tunnel vs plain (median)",
        unit: "Mbit/s",
        bars: rows.map((r) => ({
          label: `${r.pair.split(" (")[0]} ${r.path}${r.impl ? ` (${r.impl})` : ""}`,
          segments: [{ name: r.path, value: r.mbps }],
          note: `${Math.round(r.mbps)} Mbit/s (x${r.ratio})`,
        })),
      },
      notes,
      raw: paths,
    };
  },
};
