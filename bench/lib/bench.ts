import { ensureEngine } from "../../src/engine/ensure.ts";
import { ensureImages, IMAGE_ROLES, type ImageRole } from "../../src/images/build.ts";
import { status } from "../../src/lab/lifecycle.ts";
import type { BenchResult, Machine } from "./types.ts";

export interface BenchContext {
  machine: Machine;
  /** Options from the command line (--runs 3 -> { runs: "3" }), already defaulted by run.ts. */
  opts: Record<string, string>;
  log: (line: string) => void;
  /** Set by Ctrl-C: benchmarks stop at the next step and clean up. */
  signal: AbortSignal;
}

export interface Benchmark {
  name: string;
  title: string;
  /** Options this benchmark reads, with defaults and what they mean (for --help). */
  options: Record<string, { default: string; help: string }>;
  /** Minutes a full run takes on the reference machine (2 cores), for --help. */
  minutes: string;
  run(ctx: BenchContext): Promise<BenchResult>;
}

export function num(ctx: BenchContext, key: string): number {
  const v = Number(ctx.opts[key]);
  if (!Number.isFinite(v)) throw new Error(`--${key} must be a number, not "${ctx.opts[key]}"`);
  return v;
}

export function list(ctx: BenchContext, key: string): string[] {
  return (ctx.opts[key] ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/** The engine, every image built (so that starts are warm), and no lab of ours already running. */
export async function warmEngine(ctx: BenchContext, opts: { allowRunning?: boolean } = {}) {
  const engine = await ensureEngine({ allowSetup: false });
  const r = await ensureImages(engine, Object.keys(IMAGE_ROLES) as ImageRole[]);
  if (r.built.length) ctx.log(`built images first (not timed): ${r.built.join(", ")}`);
  // Our own leftovers from an interrupted benchmark (the --lab copies benchmarks use).
  for (const l of await status(engine)) if (l.lab === "bench" || l.lab.startsWith("bench-fp-")) await engine.removeLabelled({ lab: l.lab });
  const running = await status(engine);
  const names = running.map((l) => `${l.recipe}${l.lab === "default" ? "" : ` --lab ${l.lab}`}`).join(", ");
  if (running.length && opts.allowRunning) ctx.log(`note: other labs are running (${names}); they share the CPU with this benchmark`);
  if (!opts.allowRunning) {
    if (running.length)
      throw new Error(
        `labs are running (${running.map((l) => `${l.recipe}${l.lab === "default" ? "" : ` --lab ${l.lab}`}`).join(", ")}); benchmarks need a quiet engine: stop them first`,
      );
  }
  return engine;
}

export function checkAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new Error("interrupted");
}
