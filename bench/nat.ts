import { setOptions } from "../src/lab/actions.ts";
import type { TsPong } from "../src/nodes/tailscale.ts";
import { loadRecipe } from "../src/recipe/load.ts";
import type { MatrixEntry } from "../src/recipe/types.ts";
import { eventually } from "../tests/support/eventually.ts";
import { LabHandle } from "../tests/support/lab-handle.ts";
import { TIMEOUT } from "../tests/support/timeouts.ts";
import { type BenchContext, type Benchmark, checkAborted, list, num, warmEngine } from "./lib/bench.ts";
import { BENCH_LAB } from "./lib/labs.ts";
import { median, secs } from "./lib/stats.ts";
import type { Bar } from "./lib/types.ts";

/** `easy/hard` names the matrix entry with nat-a easy and nat-b hard. */
const pairName = (e: MatrixEntry) => `${e.set["nat-a"]}/${e.set["nat-b"]}`;

interface PairRun {
  /** From `./start.ts set` (the same machinery) to the first pong over the predicted path; undefined: never within the deadline. */
  fromSetMs?: number;
  /** From `tailscale up` on the `from` client (after `tailscale down`) to its first direct pong; direct pairs only. */
  fromUpMs?: number;
  /** The path the client reported last. */
  observed: TsPong["path"];
}

/** Poll one `tailscale ping` (the client's own answer) until its path is `want`; the time, or undefined at the deadline. */
async function timeTo(
  lab: LabHandle,
  from: string,
  toIp: string,
  want: TsPong["path"],
  seen: { path: TsPong["path"] },
): Promise<number | undefined> {
  const t0 = performance.now();
  try {
    await eventually(
      `${from} ${want}`,
      async () => {
        // Traffic beside the disco ping, as a person waiting for a path sends: an idle
        // tailscaled (45 s without a packet through the tunnel) stops its periodic STUN, and
        // with it any port-mapping request (upnp would then never turn direct).
        const [p] = await Promise.all([lab.tailscale(from).pong(toIp, 2), lab.tailscale(from).ping(toIp)]);
        seen.path = p.path;
        return p.path === want;
      },
      { timeout: TIMEOUT.converge, interval: 250 },
    );
    return performance.now() - t0;
  } catch {
    return undefined;
  }
}

/** The `tailscale up` the recipe's setup ran for this client, minus its (spent) auth key. */
function upAgain(lab: LabHandle, node: string): string {
  const up = lab.recipe.setup.find((a) => a.node === node && a.run?.startsWith("tailscale up"))!.run!;
  const control = lab.ip("headscale", "internet");
  return up
    .replace(/\{\{ nodes\.headscale\.ip\.internet \}\}/g, control)
    .replace(/--auth-key \{\{ vars\.\w+ \}\} /, "")
    .replace(/--advertise-routes=\{\{ networks\.site-a\.subnet \}\}/, `--advertise-routes=${lab.plan.networks["site-a"]!.subnet}`);
}

/**
 * When a pair misses its prediction, what each side itself says: its netcheck (UDP, mapping,
 * port-mapping services found) and its last port-mapper log lines, and each router's
 * miniupnpd and mappings. Read from the lab, so the miss can be explained, not guessed at.
 */
async function explainMiss(lab: LabHandle, e: MatrixEntry): Promise<string> {
  const out: string[] = [];
  for (const node of e.between) {
    const nc = await lab
      .tailscale(node)
      .netcheck()
      .then((n) => `UDP ${n.UDP}, varies ${n.MappingVariesByDestIP}, UPnP ${n.UPnP}, PMP ${n.PMP}, PCP ${n.PCP}`)
      .catch((err: Error) => `netcheck failed: ${err.message}`);
    const log = (await lab.engine.logTail(lab.container(node), 20_000).catch(() => ""))
      .split("\n")
      .filter((l) => /portmap|upnp/i.test(l))
      .slice(-8);
    out.push(`${node}: ${nc}`, ...log.map((l) => `  ${l}`));
  }
  for (const router of ["router-a", "router-b"]) {
    const upnp = await lab.sh(router, "pgrep -a miniupnpd; nft list table inet wg3upnp 2>/dev/null | grep -c dnat || true");
    out.push(`${router}: ${upnp.stdout.trim().replace(/\n/g, " | ") || "no miniupnpd"}`);
  }
  return out.join("\n");
}

async function onePair(lab: LabHandle, e: MatrixEntry): Promise<PairRun> {
  const set = (values: Record<string, string>) =>
    setOptions({ engine: lab.engine, recipe: lab.recipe, plan: lab.plan, captured: {} }, values);
  const [from, to] = e.between;
  const toIp = await lab.tailscale(to).ip();
  const opposite = e.path === "direct" ? "relayed" : "direct";
  const seen = { path: "none" as TsPong["path"] };
  // From the opposite path, as the e2e matrix does: the switch is what is timed.
  await set(e.path === "direct" ? { "nat-a": "hard", "nat-b": "hard" } : { "nat-a": "easy", "nat-b": "easy" });
  await timeTo(lab, from, toIp, opposite, seen);
  const t0 = performance.now();
  await set(e.set);
  const setMs = performance.now() - t0;
  const toPath = await timeTo(lab, from, toIp, e.path, seen);
  const run: PairRun = { fromSetMs: toPath === undefined ? undefined : setMs + toPath, observed: seen.path };
  if (e.path === "direct" && toPath !== undefined) {
    const ts = lab.tailscale(from);
    await ts.down();
    const t1 = performance.now();
    const r = await ts.sh(upAgain(lab, from));
    if (r.exitCode !== 0) throw new Error(`tailscale up on ${from} failed: ${(r.stderr || r.stdout).trim().slice(-300)}`);
    const direct = await timeTo(lab, from, toIp, "direct", seen);
    run.fromUpMs = direct === undefined ? undefined : performance.now() - t1;
  }
  return run;
}

export const nat: Benchmark = {
  name: "nat",
  title: "recipe-4 NAT matrix: the path each NAT pair gets, and how long it takes",
  minutes: "~1 min per pair and run (8 pairs x 3 runs: ~25 min)",
  options: {
    runs: { default: "3", help: "runs per NAT pair (the median is reported)" },
    pairs: { default: "all", help: "matrix pairs to run, e.g. easy/easy,easy/hard (all: the recipe's whole matrix)" },
    control: { default: "headscale", help: "recipe-4's --control (headscale|builtin)" },
  },
  async run(ctx: BenchContext) {
    const t0 = Date.now();
    await warmEngine(ctx, { allowRunning: true });
    const runs = num(ctx, "runs");
    const matrix = loadRecipe("recipe-4").matrix;
    const wanted = list(ctx, "pairs");
    const entries = wanted.includes("all") ? matrix : matrix.filter((e) => wanted.includes(pairName(e)));
    const unknown = wanted.filter((w) => w !== "all" && !matrix.some((e) => pairName(e) === w));
    if (unknown.length) throw new Error(`no matrix pair ${unknown.join(", ")}; the pairs are: ${matrix.map(pairName).join(", ")}`);
    const control = ctx.opts.control!;
    const lab = await LabHandle.start("recipe-4", { lab: BENCH_LAB, options: { control } });
    const raw: Record<string, PairRun[]> = {};
    try {
      for (const e of entries) {
        raw[pairName(e)] = [];
        for (let i = 0; i < runs; i++) {
          checkAborted(ctx.signal);
          const r = await onePair(lab, e);
          raw[pairName(e)]!.push(r);
          const up = r.fromUpMs === undefined ? "" : `, from tailscale up ${secs(r.fromUpMs)} s`;
          ctx.log(
            `${pairName(e)} run ${i + 1}/${runs}: ${r.observed} (predicted ${e.path}), from set ${r.fromSetMs === undefined ? "never" : `${secs(r.fromSetMs)} s`}${up}`,
          );
          if (r.fromSetMs === undefined) ctx.log(`   why, as the clients and routers say:\n${await explainMiss(lab, e)}`);
        }
      }
    } finally {
      await lab.stop();
    }
    const med = (xs: (number | undefined)[]) => {
      const ok = xs.filter((x): x is number => x !== undefined);
      return ok.length ? secs(median(ok)) : null;
    };
    const spread = (xs: (number | undefined)[]) => {
      const ok = xs.filter((x): x is number => x !== undefined);
      return ok.length > 1 ? `${secs(Math.min(...ok))}-${secs(Math.max(...ok))}` : "";
    };
    const rows = entries.map((e) => {
      const rs = raw[pairName(e)]!;
      const held = rs.filter((r) => r.fromSetMs !== undefined).length;
      return {
        pair: pairName(e),
        predicted: e.path,
        observed: [...new Set(rs.map((r) => r.observed))].join(", "),
        held: `${held}/${rs.length}`,
        fromSet: med(rs.map((r) => r.fromSetMs)),
        fromSetSpread: spread(rs.map((r) => r.fromSetMs)),
        fromUp: e.path === "direct" ? med(rs.map((r) => r.fromUpMs)) : null,
      };
    });
    const allHeld = rows.every((r) => r.held.startsWith(`${runs}/`));
    const bars: Bar[] = rows.map((r) => ({
      label: `${r.pair} (${r.predicted})`,
      segments: [{ name: "from set", value: r.fromSet ?? 0 }],
      note: r.fromSet === null ? "never" : `${r.fromSet} s`,
    }));
    return {
      name: "nat",
      title: this.title,
      status: allHeld ? "ok" : "partial",
      machine: ctx.machine,
      params: { runs, pairs: entries.map(pairName), control },
      durationS: (Date.now() - t0) / 1000,
      columns: [
        { key: "pair", label: "nat-a/nat-b" },
        { key: "predicted", label: "predicted" },
        { key: "observed", label: "observed" },
        { key: "held", label: "runs as predicted" },
        { key: "fromSet", label: "set -> path", unit: "s" },
        { key: "fromSetSpread", label: "spread", unit: "s" },
        { key: "fromUp", label: "tailscale up -> direct", unit: "s" },
      ],
      rows,
      headlines: rows.map((r) => ({ label: `${r.pair} ${r.predicted}`, value: r.fromSet === null ? "never" : `${r.fromSet} s from set` })),
      chart: { title: `recipe-4 (${control}): time from a live NAT switch to the predicted path (median)`, unit: "seconds", bars },
      notes: [
        "Paths are the clients' own answer: one `tailscale ping --until-direct=false` polled every 0.25 s after the change, each beside one ICMP ping through the tunnel (traffic: an idle tailscaled stops its periodic STUN, and so its port-mapping requests, 45 s after its last packet).",
        "set -> path: from `set` (the router's `nft -f`, as `./start.ts set` does) starting from the opposite path, to the first pong over the predicted one.",
        "tailscale up -> direct: `tailscale down` then `tailscale up` on the measuring client, to its first direct pong (direct pairs only).",
        "One lab for all pairs (--lab bench); deadline per change: 60 s.",
        "upnp: the first run times a new mapping (ts-a asks router-a's miniupnpd at its next periodic STUN, every 20-26 s); later runs find the mapping ts-a still holds restored by miniupnpd from its lease file, so they time only the switch back to direct.",
      ],
      raw,
    };
  },
};
