import { spawn } from "node:child_process";
import { join } from "node:path";
import { imageRef } from "../src/images/build.ts";
import { ROOT } from "../src/paths.ts";
import { loadRecipe } from "../src/recipe/load.ts";
import { eventually } from "../tests/support/eventually.ts";
import { mustSucceed, type StartTsOptions, type StartTsRun, startTs } from "../tests/support/start-ts.ts";
import { TIMEOUT } from "../tests/support/timeouts.ts";
import { type BenchContext, type Benchmark, checkAborted, list, num, warmEngine } from "./lib/bench.ts";
import { median, round, secs, sum } from "./lib/stats.ts";
import type { Bar } from "./lib/types.ts";

/** ./start.ts as the benchmark runs it: no time limit of its own (a run that fails says so). */
const cli = (args: string[], opts: StartTsOptions = {}) => startTs(args, { timeoutMs: Number.POSITIVE_INFINITY, ...opts });

/**
 * Lab start, warm: from the command to every check green, as a person types it:
 * `./start.ts R --no-attach`, then `./start.ts solve R` (when R has reference solutions), then
 * `./start.ts check R` until it exits 0. Phases come from the commands' own progress steps
 * (WG3_TIMINGS_FILE). Side by side for recipe-3: scripts/bench/recipe-3-baseline.sh, the
 * workshop's sequential podman CLI way, with the same images, addresses and checks.
 */
export const PHASES = ["prepare", "create", "start", "ready", "setup", "solve", "check"] as const;
type Phase = (typeof PHASES)[number];
type Phases = Record<Phase, number>;

interface Run {
  who: string;
  totalMs: number;
  phases: Phases;
  stopMs?: number;
  steps?: StartTsRun["steps"];
}

const BASELINE = join(ROOT, "scripts", "bench", "recipe-3-baseline.sh");

function emptyPhases(): Phases {
  return { prepare: 0, create: 0, start: 0, ready: 0, setup: 0, solve: 0, check: 0 };
}

/** Which phase a progress step of `./start.ts R` belongs to. */
function phaseOf(title: string): Phase {
  if (/^create \d+ networks? and \d+ containers?/.test(title)) return "create";
  if (title === "start containers") return "start";
  if (/^wait until .* ready$/.test(title)) return "ready";
  if (/^(build|go install|remove leftovers|start podman)/.test(title)) return "prepare";
  return "setup";
}

/** `./start.ts check R` again and again, without a pause (each takes its own time), until it passes. */
async function pollCheck(recipe: string, deadlineMs: number): Promise<{ ms: number; polls: number }> {
  const t0 = performance.now();
  let polls = 0;
  await eventually(
    `./start.ts check ${recipe} to pass`,
    async () => {
      polls++;
      const r = await cli(["check", recipe]);
      if (r.code !== 0) throw new Error(r.stdout.trim().slice(-800));
      return true;
    },
    { timeout: deadlineMs, interval: 0 },
  );
  return { ms: performance.now() - t0, polls };
}

/** `recipe-3:builtin` is recipe-3 started with `--control builtin`; other names are recipes as is. */
async function ours(entry: string): Promise<Run> {
  const [recipe, control] = entry.split(":") as [string, string | undefined];
  const phases = emptyPhases();
  const t0 = performance.now();
  let run: Run | undefined;
  let failure: unknown;
  try {
    const up = mustSucceed(await cli([recipe, "--no-attach", ...(control ? ["--control", control] : [])], { timings: true }));
    for (const s of up.steps) phases[phaseOf(s.title)] += s.ms;
    // Everything the start command did outside its steps: process start, engine probe,
    // recipe load, plan, keys and TLS, image check.
    phases.prepare += Math.max(0, up.ms - sum(up.steps.map((s) => s.ms)));
    if (loadRecipe(recipe).exercises.some((e) => e.solve.length)) phases.solve = mustSucceed(await cli(["solve", recipe])).ms;
    phases.check = (await pollCheck(recipe, TIMEOUT.converge)).ms;
    run = { who: "ours", totalMs: performance.now() - t0, phases, steps: up.steps };
  } catch (e) {
    failure = e;
  }
  // Always stop, also after a failure; the stop is timed but not part of "to green".
  const t = performance.now();
  const stop = await cli(["stop", recipe]);
  if (failure) throw failure;
  mustSucceed(stop);
  run!.stopMs = performance.now() - t;
  return run!;
}

async function baseline(): Promise<Run> {
  const env = {
    ...process.env,
    IMG_HEADSCALE: imageRef("headscale"),
    IMG_TAILSCALE: imageRef("tailscale"),
    IMG_WGPEER: imageRef("wg-peer"),
    IMG_WEBSERVER: imageRef("webserver"),
  };
  const child = spawn(BASELINE, [], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (b: Buffer) => {
    out += b;
  });
  child.stderr.on("data", (b: Buffer) => {
    err += b;
  });
  const code = await new Promise<number>((resolve) => child.on("close", (c) => resolve(c ?? -1)));
  if (code !== 0) throw new Error(`${BASELINE} exited ${code}: ${err.trim().slice(-1200)}`);
  const phases = emptyPhases();
  for (const m of out.matchAll(/^PHASE (\S+) (\d+)$/gm)) {
    if ((PHASES as readonly string[]).includes(m[1]!)) phases[m[1] as Phase] += Number(m[2]);
  }
  return { who: "baseline", totalMs: sum(Object.values(phases)), phases };
}

function medianRun(runs: Run[]): Run & { runsMs: number[] } {
  const phases = emptyPhases();
  for (const p of PHASES) phases[p] = median(runs.map((r) => r.phases[p]));
  const stops = runs.map((r) => r.stopMs).filter((x): x is number => x !== undefined);
  return {
    who: runs[0]!.who,
    totalMs: median(runs.map((r) => r.totalMs)),
    phases,
    stopMs: stops.length ? median(stops) : undefined,
    runsMs: runs.map((r) => Math.round(r.totalMs)),
  };
}

export const labStart: Benchmark = {
  name: "lab-start",
  title: "Lab start, warm: command to all checks green",
  minutes: "~4 min with 3 runs; recipe-3 ~25 s a run, its baseline ~30 s",
  options: {
    runs: { default: "3", help: "runs per recipe (the median is reported)" },
    recipes: {
      default: "recipe-0,recipe-1,recipe-2,recipe-3,recipe-3:builtin",
      help: "recipes to start (recipe-3:builtin = recipe-3 --control builtin)",
    },
    baseline: { default: "yes", help: "also run scripts/bench/recipe-3-baseline.sh (yes|no)" },
  },
  async run(ctx: BenchContext) {
    const t0 = Date.now();
    await warmEngine(ctx);
    const runs = num(ctx, "runs");
    const recipes = list(ctx, "recipes");
    const withBaseline = ctx.opts.baseline !== "no" && recipes.includes("recipe-3");
    const raw: Record<string, Run[]> = {};
    for (const recipe of recipes) {
      raw[recipe] = [];
      if (recipe === "recipe-3" && withBaseline) raw.baseline = [];
      for (let i = 0; i < runs; i++) {
        checkAborted(ctx.signal);
        const r = await ours(recipe);
        raw[recipe]!.push(r);
        ctx.log(`${recipe} run ${i + 1}/${runs}: ${secs(r.totalMs)} s to green (stop ${secs(r.stopMs ?? 0)} s)`);
        // Interleaved with ours, so that both see the same machine state.
        if (recipe === "recipe-3" && withBaseline) {
          checkAborted(ctx.signal);
          const b = await baseline();
          raw.baseline!.push(b);
          ctx.log(`recipe-3 baseline run ${i + 1}/${runs}: ${secs(b.totalMs)} s to green`);
        }
      }
    }
    const med = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, medianRun(v)]));
    const rows = Object.entries(med).map(([k, m]) => ({
      what: k === "baseline" ? "recipe-3 baseline (workshop way, podman CLI)" : k,
      total: secs(m.totalMs),
      ...Object.fromEntries(PHASES.map((p) => [p, secs(m.phases[p])])),
      stop: m.stopMs === undefined ? null : secs(m.stopMs),
      runs: m.runsMs.map((x) => secs(x)).join(" / "),
    }));
    const headlines = recipes.filter((r) => med[r]).map((r) => ({ label: `${r} to green (median)`, value: `${secs(med[r]!.totalMs)} s` }));
    const notes = [
      "Warm: images and binaries cached; each run starts from no lab and ends with `./start.ts stop`.",
      "Ours is timed as typed: `./start.ts R --no-attach`, `./start.ts solve R` (recipes with reference solutions), then `./start.ts check R` until it exits 0. " +
        "`prepare` is everything the start command does outside its steps (Node and tsx start-up, engine probe, keys, TLS, image check).",
      "recipe-3's `solve` is the packet-capture exercise, which holds two 8 s tcpdump windows open by design; the baseline does the same.",
    ];
    if (med.baseline && med["recipe-3"]) {
      const ratio = med["recipe-3"].totalMs / med.baseline.totalMs;
      const upOurs = med["recipe-3"].totalMs - med["recipe-3"].phases.solve - med["recipe-3"].phases.check;
      const upBase = med.baseline.totalMs - med.baseline.phases.solve - med.baseline.phases.check;
      headlines.push({
        label: "recipe-3 ours / baseline, to green",
        value: `${round(ratio)} (${secs(med["recipe-3"].totalMs)} s / ${secs(med.baseline.totalMs)} s)`,
      });
      headlines.push({
        label: "recipe-3 ours / baseline, to mesh up (before solve)",
        value: `${round(upOurs / upBase)} (${secs(upOurs)} s / ${secs(upBase)} s)`,
      });
    }
    const bars: Bar[] = Object.entries(med).map(([k, m]) => ({
      label: k === "baseline" ? "recipe-3 baseline" : k,
      segments: PHASES.map((p) => ({ name: p, value: secs(m.phases[p]) })),
      note: `${secs(m.totalMs)} s`,
    }));
    return {
      name: "lab-start",
      title: this.title,
      status: "ok",
      machine: ctx.machine,
      params: { runs, recipes, baseline: withBaseline },
      durationS: (Date.now() - t0) / 1000,
      columns: [
        { key: "what", label: "lab" },
        { key: "total", label: "to green", unit: "s" },
        ...PHASES.map((p) => ({ key: p, label: p, unit: "s" })),
        { key: "stop", label: "stop", unit: "s" },
        { key: "runs", label: "all runs", unit: "s" },
      ],
      rows,
      headlines,
      chart: { title: "Warm start to all checks green (median), by phase", unit: "seconds", bars },
      notes,
      raw,
    };
  },
};
