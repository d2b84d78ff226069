import { eventually } from "../tests/support/eventually.ts";
import type { LabHandle } from "../tests/support/lab-handle.ts";
import { TIMEOUT } from "../tests/support/timeouts.ts";
import { type BenchContext, type Benchmark, checkAborted, list, num, warmEngine } from "./lib/bench.ts";
import { perControlServer } from "./lib/labs.ts";
import { median, secs } from "./lib/stats.ts";
import type { Bar } from "./lib/types.ts";

/**
 * recipe-5's HA subnet routers: how long the home LAN is unreachable when its primary router
 * dies, per control server. Two ways to die: its cable is cut (`cable cut`: silence, found by
 * the server's probe) and its container is stopped (tailscaled closes its connection).
 */

type Kind = "cut" | "stop";
const ROUTERS = ["ts-router1", "ts-router2"] as const;

interface Failover {
  kind: Kind;
  from: string;
  /** From the fault to the LAN host's first answer through the standby; undefined: not within the deadline. */
  ms?: number;
}

/** The router whose LAN address the LAN host's echo reports (they masquerade), or "" when it does not answer. */
async function forwardedBy(lab: LabHandle): Promise<string> {
  const r = await lab.sh("ts-alice", `curl -s --max-time 2 http://${lab.ip("lanhost", "home")}/`);
  return ROUTERS.find((n) => lab.ip(n, "home") === r.stdout.trim()) ?? "";
}

const untilForwardedBy = (lab: LabHandle, router: string) =>
  eventually(`the LAN host answering through ${router}`, async () => (await forwardedBy(lab)) === router, {
    timeout: TIMEOUT.converge,
    interval: 250,
  });

/** Kill the primary one way, time until the standby forwards, then bring the dead one back (the standby stays primary). */
async function once(lab: LabHandle, kind: Kind): Promise<Failover> {
  const from = await forwardedBy(lab);
  if (!from) throw new Error("the LAN host does not answer alice through either router");
  const standby = ROUTERS.find((r) => r !== from)!;
  const t0 = performance.now();
  if (kind === "cut") await lab.sh(from, "cable cut");
  else await lab.engine.stop(lab.container(from));
  let ms: number | undefined;
  try {
    await untilForwardedBy(lab, standby);
    ms = performance.now() - t0;
  } catch {
    ms = undefined;
  }
  if (kind === "cut") await lab.sh(from, "cable restore");
  else await lab.engine.start(lab.container(from));
  const name = from.replace(/^ts-/, "");
  await eventually(`${name} online again`, async () => (await lab.controlServer().onlineNodes()).some((n) => n.given_name === name), {
    timeout: TIMEOUT.recovery,
  });
  return { kind, from, ms };
}

export const failover: Benchmark = {
  name: "failover",
  title: "recipe-5 HA subnet routers: LAN unreachable after the primary dies, per control server",
  minutes: "~2 min per server at 2 runs (lab start included)",
  options: {
    runs: { default: "3", help: "failovers per kind and server (the median is reported)" },
    servers: { default: "headscale,builtin", help: "recipe-5's --control values to measure" },
  },
  async run(ctx: BenchContext) {
    const t0 = Date.now();
    await warmEngine(ctx, { allowRunning: true });
    const runs = num(ctx, "runs");
    const servers = list(ctx, "servers");
    const raw = await perControlServer(ctx, "recipe-5", servers, async (lab, control) => {
      // The LAN must be allowed under a policy; the zerotrust policy is the exercises' own.
      await lab.sh("headscale", "headscale policy set -f /root/zerotrust.hujson");
      await untilForwardedBy(lab, "ts-router1");
      const got: Failover[] = [];
      for (const kind of ["cut", "stop"] as Kind[]) {
        for (let i = 0; i < runs; i++) {
          checkAborted(ctx.signal);
          const f = await once(lab, kind);
          got.push(f);
          ctx.log(
            `${control} ${kind} ${f.from} run ${i + 1}/${runs}: ${f.ms === undefined ? "no failover within 60 s" : `${secs(f.ms)} s`}`,
          );
        }
      }
      return got;
    });
    const med = (fs: Failover[]) => {
      const ok = fs.flatMap((f) => (f.ms === undefined ? [] : [f.ms]));
      return ok.length ? secs(median(ok)) : null;
    };
    const rows = servers.flatMap((control) =>
      (["cut", "stop"] as Kind[]).map((kind) => {
        const fs = raw[control]!.filter((f) => f.kind === kind);
        return {
          server: control,
          fault: kind === "cut" ? "cable cut" : "container stop",
          failedOver: `${fs.filter((f) => f.ms !== undefined).length}/${fs.length}`,
          median: med(fs),
          max: fs.some((f) => f.ms === undefined) ? null : secs(Math.max(...fs.map((f) => f.ms!))),
        };
      }),
    );
    const bars: Bar[] = rows.map((r) => ({
      label: `${r.server}, ${r.fault}`,
      segments: [{ name: "to the standby", value: r.median ?? 0 }],
      note: r.median === null ? "never" : `${r.median} s`,
    }));
    return {
      name: "failover",
      title: this.title,
      status: rows.every((r) => r.failedOver.startsWith(`${runs}/`)) ? "ok" : "partial",
      machine: ctx.machine,
      params: { runs, servers },
      durationS: (Date.now() - t0) / 1000,
      columns: [
        { key: "server", label: "control server" },
        { key: "fault", label: "the primary" },
        { key: "failedOver", label: "failed over" },
        { key: "median", label: "LAN unreachable (median)", unit: "s" },
        { key: "max", label: "max", unit: "s" },
      ],
      rows,
      headlines: rows.map((r) => ({ label: `${r.server} ${r.fault}`, value: r.median === null ? "never" : `${r.median} s` })),
      chart: { title: "recipe-5: home LAN unreachable after its primary router dies (median)", unit: "seconds", bars },
      notes: [
        "From the fault to the LAN host's first answer to alice through the standby router (curl polled every 0.25 s, 2 s each); the LAN host echoes the forwarding router's address.",
        "cable cut: every packet on the router's internet side dropped (nothing closed); the server finds out by probing (Headscale's HA prober, the builtin server's HTTP/2 PING: 10 s interval, 5 s timeout).",
        "container stop: tailscaled closes its connection; both servers wait up to 10 s for a reconnect before the node goes offline.",
        "The dead router comes back (cable restored, container started) before the next run, and stays standby: runs alternate between the two routers.",
        "Under the exercises' zerotrust policy; one lab per server (--lab bench).",
      ],
      raw,
    };
  },
};
