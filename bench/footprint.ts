import type { Engine } from "../src/engine/engine.ts";
import { LabHandle } from "../tests/support/lab-handle.ts";
import { type BenchContext, type Benchmark, checkAborted, list, num, warmEngine } from "./lib/bench.ts";
import { BENCH_LAB, labMemory, memInfo, RECIPE3_MESH_CHECKS, waitGreen } from "./lib/labs.ts";
import { round, secs } from "./lib/stats.ts";
import type { Bar } from "./lib/types.ts";

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** Memory of one running, green lab per recipe (default lab names, one at a time). */
/** `recipe-3:builtin` is recipe-3 with `--control builtin`. */
async function perRecipe(engine: Engine, entry: string) {
  const [recipe, control] = entry.split(":") as [string, string | undefined];
  const lab = await LabHandle.start(recipe, { lab: BENCH_LAB, options: control ? { control } : {} });
  try {
    await lab.solve();
    await waitGreen(lab);
    const m = await labMemory(engine, BENCH_LAB, recipe);
    return { recipe: entry, mib: m.bytes / MiB, containers: m.containers };
  } finally {
    await lab.stop();
  }
}

interface Level {
  labs: number;
  ok: boolean;
  /** Start time of each lab added at this level, seconds. */
  startS: number[];
  memMiB: number;
  availableGiB: number;
  stoppedBecause?: string;
}

/**
 * recipe-3 copies side by side (--lab bench-fp-N): 1, 2, 4, ... up to --max-labs, adding labs
 * one at a time, every running lab passing its mesh checks at each level. Stops early when a
 * start takes longer than --max-start-s or available memory falls below --reserve-pct.
 */
async function sideBySide(ctx: BenchContext, engine: Engine) {
  const maxLabs = num(ctx, "max-labs");
  const maxStartS = num(ctx, "max-start-s");
  const reservePct = num(ctx, "reserve-pct");
  const name = (i: number) => `bench-fp-${i}`;
  const running: LabHandle[] = [];
  const levels: Level[] = [];
  // A leftover of an interrupted earlier run would skew memory and subnets.
  for (let i = 1; i <= maxLabs; i++) await engine.removeLabelled({ lab: name(i), recipe: "recipe-3" });
  try {
    for (let target = 1; target <= maxLabs; target *= 2) {
      checkAborted(ctx.signal);
      const level: Level = { labs: target, ok: false, startS: [], memMiB: 0, availableGiB: 0 };
      levels.push(level);
      try {
        while (running.length < target) {
          checkAborted(ctx.signal);
          const t = performance.now();
          running.push(await LabHandle.start("recipe-3", { lab: name(running.length + 1) }));
          level.startS.push(secs(performance.now() - t));
          ctx.log(`side by side: lab ${running.length} up in ${level.startS.at(-1)} s`);
        }
        for (const l of running) await waitGreen(l, RECIPE3_MESH_CHECKS, 90_000);
        let bytes = 0;
        for (let i = 1; i <= running.length; i++) bytes += (await labMemory(engine, name(i), "recipe-3")).bytes;
        level.memMiB = Math.round(bytes / MiB);
        level.availableGiB = round(memInfo().availableBytes / GiB, 1);
        level.ok = true;
      } catch (e) {
        level.stoppedBecause = `failed: ${(e as Error).message.slice(0, 300)}`;
        break;
      }
      const mem = memInfo();
      if (Math.max(...level.startS) > maxStartS) level.stoppedBecause = `a start took ${Math.max(...level.startS)} s > ${maxStartS} s`;
      else if (mem.availableBytes < (mem.totalBytes * reservePct) / 100)
        level.stoppedBecause = `available memory ${round(mem.availableBytes / GiB, 1)} GiB < ${reservePct}% of ${round(mem.totalBytes / GiB, 1)} GiB`;
      else if (target * 2 > maxLabs) level.stoppedBecause = `reached --max-labs ${maxLabs}`;
      ctx.log(`side by side: ${target} labs green, ${level.memMiB} MiB, ${level.availableGiB} GiB available`);
      if (level.stoppedBecause) break;
    }
  } finally {
    for (const l of running.reverse()) await l.stop().catch(() => {});
    for (let i = 1; i <= maxLabs; i++) await engine.removeLabelled({ lab: name(i), recipe: "recipe-3" }).catch(() => {});
  }
  return levels;
}

export const footprint: Benchmark = {
  name: "footprint",
  title: "Footprint: memory per lab, recipe-3 labs side by side",
  minutes: "~2 min for the four recipes, plus ~15 s per recipe-3 copy",
  options: {
    "fp-recipes": {
      default: "recipe-0,recipe-1,recipe-2,recipe-3,recipe-3:builtin",
      help: "recipes whose memory to measure (recipe-3:builtin = recipe-3 --control builtin)",
    },
    "max-labs": { default: "8", help: "cap on recipe-3 copies side by side (doubling 1, 2, 4, ...)" },
    "max-start-s": { default: "90", help: "stop doubling when one lab start takes longer than this" },
    "reserve-pct": { default: "25", help: "stop doubling when available memory falls below this % of the total" },
  },
  async run(ctx) {
    const t0 = Date.now();
    const engine = await warmEngine(ctx, { allowRunning: true });
    const recipes = list(ctx, "fp-recipes");
    const per: { recipe: string; mib: number; containers: number }[] = [];
    for (const r of recipes) {
      checkAborted(ctx.signal);
      per.push(await perRecipe(engine, r));
      ctx.log(`${r}: ${Math.round(per.at(-1)!.mib)} MiB in ${per.at(-1)!.containers} containers`);
    }
    const levels = num(ctx, "max-labs") > 0 ? await sideBySide(ctx, engine) : [];
    const best = [...levels].reverse().find((l) => l.ok);
    const perLabMiB = best ? best.memMiB / best.labs : undefined;
    const total = memInfo().totalBytes;
    const rows: Record<string, string | number | null>[] = [
      ...per.map((p) => ({
        what: `${p.recipe} (one lab, green)`,
        labs: 1,
        containers: p.containers,
        mem: Math.round(p.mib),
        start: null,
        note: "",
      })),
      ...levels.map((l) => ({
        what: `recipe-3 x ${l.labs} side by side`,
        labs: l.labs,
        containers: l.labs * 5,
        mem: l.ok ? l.memMiB : null,
        start: l.startS.length ? `${Math.min(...l.startS)}-${Math.max(...l.startS)}` : null,
        note: `${l.ok ? "all green" : "NOT green"}${l.availableGiB ? `, ${l.availableGiB} GiB available` : ""}${l.stoppedBecause ? `; stopped: ${l.stoppedBecause}` : ""}`,
      })),
    ];
    const headlines = per.map((p) => ({ label: `${p.recipe} memory`, value: `${Math.round(p.mib)} MiB` }));
    if (best && perLabMiB) {
      headlines.push({
        label: "recipe-3 labs side by side, all green",
        value: `${best.labs}${best.stoppedBecause?.startsWith("reached") ? " (the cap)" : ""}`,
      });
      headlines.push({ label: "recipe-3 labs per GiB of container memory", value: `${round(1024 / perLabMiB, 1)}` });
      headlines.push({
        label: `recipe-3 labs that fit in this machine's ${round(total / GiB, 1)} GiB (by memory)`,
        value: `~${Math.floor(total / MiB / perLabMiB)}`,
      });
    }
    const bars: Bar[] = [
      ...per.map((p) => ({ label: p.recipe, segments: [{ name: "one lab", value: Math.round(p.mib) }] })),
      ...levels
        .filter((l) => l.ok)
        .map((l) => ({ label: `recipe-3 x ${l.labs}`, segments: [{ name: "labs side by side", value: l.memMiB }] })),
    ];
    const failed = levels.some((l) => !l.ok);
    return {
      name: "footprint",
      title: this.title,
      status: failed ? "partial" : "ok",
      machine: ctx.machine,
      params: { recipes, maxLabs: num(ctx, "max-labs"), maxStartS: num(ctx, "max-start-s"), reservePct: num(ctx, "reserve-pct") },
      durationS: (Date.now() - t0) / 1000,
      columns: [
        { key: "what", label: "what" },
        { key: "containers", label: "containers" },
        { key: "mem", label: "memory", unit: "MiB" },
        { key: "start", label: "start of the added labs", unit: "s" },
        { key: "note", label: "" },
      ],
      rows,
      headlines,
      chart: { title: "Container memory (engine stats, sum over the lab's containers)", unit: "MiB", bars },
      notes: [
        "Memory is what the engine's stats report per container (usage minus inactive page cache, as `docker stats` shows it), summed over the lab's containers, once every check is green.",
        "Side by side: recipe-3 copies with `--lab bench-fp-N`, started one after another; at each level every running copy passes nodes-online, tracepath, curl and magicdns (the capture exercise is left out).",
        "Labs per GiB = 1 GiB / (memory of the largest green level / its number of labs). The limit on 2 cores is CPU during starts more than memory.",
      ],
      raw: { perRecipe: per, levels },
    };
  },
};
