import { readFileSync } from "node:fs";
import type { Engine } from "../../src/engine/engine.ts";
import { eventually } from "../../tests/support/eventually.ts";
import { LabHandle } from "../../tests/support/lab-handle.ts";
import { TIMEOUT } from "../../tests/support/timeouts.ts";
import { type BenchContext, checkAborted } from "./bench.ts";

/** Memory a container uses as `docker stats` shows it: usage minus inactive page cache. */
export async function containerMemory(engine: Engine, id: string): Promise<number> {
  return engine.memoryUsage(id);
}

/** Sum of engine-reported memory over every container of a lab. */
export async function labMemory(engine: Engine, lab: string, recipe: string): Promise<{ bytes: number; containers: number }> {
  const cs = await engine.listContainers({ lab, recipe });
  const each = await Promise.all(cs.map((c) => containerMemory(engine, c.id)));
  return { bytes: each.reduce((a, b) => a + b, 0), containers: cs.length };
}

export function memInfo(): { totalBytes: number; availableBytes: number } {
  const text = readFileSync("/proc/meminfo", "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0) * 1024;
  return { totalBytes: kb("MemTotal"), availableBytes: kb("MemAvailable") };
}

/**
 * Wait until every listed exercise checks out (all of them when `only` is absent); on timeout
 * the error names the failing ones with what they saw.
 */
export async function waitGreen(lab: LabHandle, only?: string[], timeoutMs: number = TIMEOUT.converge): Promise<void> {
  await eventually(
    `${lab.recipe.name}${lab.plan.lab === "default" ? "" : ` (lab ${lab.plan.lab})`}: checks ${only?.join(", ") ?? "all"} green`,
    async () => {
      const results = await lab.checkAll();
      const bad = results.filter((r) => !r.ok && (!only || only.includes(r.exercise)));
      if (bad.length) throw new Error(bad.map((b) => `${b.exercise}: ${b.detail ?? "not yet"}`).join("; "));
      return true;
    },
    { timeout: timeoutMs },
  );
}

/** recipe-3's checks that hold right after start (the capture exercise needs its solve first). */
export const RECIPE3_MESH_CHECKS = ["nodes-online", "tracepath", "curl", "magicdns"];

/**
 * Benchmarks other than lab-start run their labs as this --lab copy (own names, 10.213.x.0/24
 * subnets), so that they never clash with a default lab; the numbers are the same.
 */
export const BENCH_LAB = "bench";

/**
 * For each control server in turn: start `recipe` on it as the bench lab, collect what `measure`
 * returns, and stop the lab (also when `measure` fails).
 */
export async function perControlServer<T>(
  ctx: BenchContext,
  recipe: string,
  servers: string[],
  measure: (lab: LabHandle, control: string) => Promise<T[]>,
): Promise<Record<string, T[]>> {
  const raw: Record<string, T[]> = {};
  for (const control of servers) {
    checkAborted(ctx.signal);
    const lab = await LabHandle.start(recipe, { lab: BENCH_LAB, options: { control } });
    try {
      raw[control] = await measure(lab, control);
    } finally {
      await lab.stop();
    }
  }
  return raw;
}
