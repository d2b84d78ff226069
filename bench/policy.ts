import { parseProbes, probeScript, reached } from "../src/lab/matrix.ts";
import { eventually } from "../tests/support/eventually.ts";
import type { LabHandle } from "../tests/support/lab-handle.ts";
import { TIMEOUT } from "../tests/support/timeouts.ts";
import { type BenchContext, type Benchmark, checkAborted, list, num, warmEngine } from "./lib/bench.ts";
import { perControlServer } from "./lib/labs.ts";
import { median, secs } from "./lib/stats.ts";
import type { Bar } from "./lib/types.ts";

/**
 * recipe-5's ACL policy: how long after `headscale policy set` returns the reachability matrix
 * changes for the pair the change is about (bob to the server's SSH port, 22), per control
 * server. The probe is the matrix's own (src/lab/matrix.ts: a real TCP connection from bob's
 * container, 2 s to answer), started every 250 ms, so a change is seen within that.
 */

type Direction = "open" | "close";
/** The exercises' policies: zerotrust gives bob the server's 80 only, the colleague's opens everything. */
const POLICY: Record<Direction, string> = { open: "/root/colleague.hujson", close: "/root/zerotrust.hujson" };
const PORT = 22;
const PROBE_EVERY_MS = 250;

interface Propagation {
  direction: Direction;
  /** From `policy set` returning to the first probe that sees the new state; undefined: not within the deadline. */
  ms?: number;
}

/** The matrix's probe of bob -> server:22, once: reached or not. */
async function probe(lab: LabHandle, target: string): Promise<boolean> {
  const r = await lab.sh("ts-bob", probeScript([target]));
  const outcome = parseProbes(r.stdout).get(target)?.outcome;
  return outcome !== undefined && reached(outcome);
}

/**
 * Probes started every PROBE_EVERY_MS, overlapping (a blocked one takes its 2 s): the time of
 * the first one to see `want`. For "reached" that is when its connection completed; for "not
 * reached" when it started (its SYNs, from then on, went unanswered).
 */
async function firstSeen(lab: LabHandle, target: string, want: boolean, t0: number, deadlineMs: number): Promise<number | undefined> {
  let seen: number | undefined;
  const inFlight = new Set<Promise<void>>();
  while (seen === undefined && performance.now() - t0 < deadlineMs) {
    const started = performance.now();
    const p = probe(lab, target).then((ok) => {
      if (ok === want) {
        const at = (want ? performance.now() : started) - t0;
        seen = seen === undefined ? at : Math.min(seen, at);
      }
    });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
    await new Promise((r) => setTimeout(r, PROBE_EVERY_MS));
  }
  await Promise.all(inFlight);
  return seen;
}

/** Set the policy that makes the pair `direction`, and time until the matrix's probe sees it. */
async function once(lab: LabHandle, target: string, direction: Direction): Promise<Propagation> {
  const set = await lab.sh("headscale", `headscale policy set -f ${POLICY[direction]}`);
  if (set.exitCode !== 0) throw new Error(`headscale policy set -f ${POLICY[direction]}: ${set.stderr.trim() || set.stdout.trim()}`);
  const t0 = performance.now();
  const ms = await firstSeen(lab, target, direction === "open", t0, TIMEOUT.converge);
  // Settled before the next change: the probe sees the new state steadily.
  await eventually(
    `bob -> server:${PORT} ${direction === "open" ? "reached" : "blocked"}`,
    async () => (await probe(lab, target)) === (direction === "open"),
    {
      timeout: TIMEOUT.converge,
    },
  );
  return { direction, ms };
}

export const policyUpdate: Benchmark = {
  name: "policy",
  title: "recipe-5 ACL policy: `headscale policy set` until the matrix changes for the pair, per control server",
  minutes: "~2 min per server at 5 runs (lab start included)",
  options: {
    runs: { default: "5", help: "policy changes per direction and server (median and spread reported)" },
    servers: { default: "headscale,builtin", help: "recipe-5's --control values to measure" },
  },
  async run(ctx: BenchContext) {
    const t0 = Date.now();
    await warmEngine(ctx, { allowRunning: true });
    const runs = num(ctx, "runs");
    const servers = list(ctx, "servers");
    const raw = await perControlServer(ctx, "recipe-5", servers, async (lab, control) => {
      const target = `${(await lab.sh("ts-bob", "tailscale ip -4 server")).stdout.trim()}:${PORT}`;
      await once(lab, target, "close");
      const got: Propagation[] = [];
      for (let i = 0; i < runs; i++)
        for (const direction of ["open", "close"] as Direction[]) {
          checkAborted(ctx.signal);
          const p = await once(lab, target, direction);
          got.push(p);
          ctx.log(
            `${control} ${direction} run ${i + 1}/${runs}: ${p.ms === undefined ? "no change within the deadline" : `${secs(p.ms)} s`}`,
          );
        }
      return got;
    });
    const rows = servers.flatMap((control) =>
      (["open", "close"] as Direction[]).map((direction) => {
        const ps = raw[control]!.filter((p) => p.direction === direction);
        const ok = ps.flatMap((p) => (p.ms === undefined ? [] : [p.ms]));
        return {
          server: control,
          change: direction === "open" ? "22 opened (colleague's policy)" : "22 closed (zerotrust policy)",
          changed: `${ok.length}/${ps.length}`,
          median: ok.length ? secs(median(ok)) : null,
          min: ok.length ? secs(Math.min(...ok)) : null,
          max: ok.length === ps.length && ok.length ? secs(Math.max(...ok)) : null,
        };
      }),
    );
    const bars: Bar[] = rows.map((r) => ({
      label: `${r.server}, ${r.change.split(" (")[0]}`,
      segments: [{ name: "to the matrix change", value: r.median ?? 0 }],
      note: r.median === null ? "never" : `${r.median} s (${r.min}-${r.max ?? "?"})`,
    }));
    return {
      name: "policy",
      title: this.title,
      status: rows.every((r) => r.changed === `${runs}/${runs}`) ? "ok" : "partial",
      machine: ctx.machine,
      params: { runs, servers },
      durationS: (Date.now() - t0) / 1000,
      columns: [
        { key: "server", label: "control server" },
        { key: "change", label: "bob -> server:22" },
        { key: "changed", label: "changed" },
        { key: "median", label: "policy set to matrix change (median)", unit: "s" },
        { key: "min", label: "min", unit: "s" },
        { key: "max", label: "max", unit: "s" },
      ],
      rows,
      headlines: rows.map((r) => ({
        label: `${r.server} ${r.change.split(" (")[0]}`,
        value: r.median === null ? "never" : `${r.median} s`,
      })),
      chart: { title: "recipe-5: `headscale policy set` until the matrix changes for bob -> server:22 (median)", unit: "seconds", bars },
      notes: [
        "From `headscale policy set -f FILE` returning (in the headscale container, through `podman exec`) to the first matrix probe of bob -> server:22 that sees the new state.",
        `The probe is the matrix's (src/lab/matrix.ts): nc from bob's container to the server's tailnet address, 2 s to answer; one starts every ${PROBE_EVERY_MS} ms, overlapping. Opened: when the first connection completed; closed: when the first probe that got no answer started (0 s: the very first probe, whose SYN leaves about 0.1 s after policy set returned, was already dropped).`,
        "Each change waits until the probe sees the new state steadily before the next; the policies alternate: the colleague's (allows everything) and the exercises' zerotrust (bob: the server's 80 only).",
        "One lab per server (--lab bench); each probe is a `podman exec`, which adds its own start-up (about 0.1 s) to every figure.",
      ],
      raw,
    };
  },
};
