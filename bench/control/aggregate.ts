/**
 * The parent's side of the load generator, pure: which worker drives which nodes, when a phase
 * is over across all workers, how busy the load generator was, and each size's time limit.
 */

/** Node indices 0..n-1 dealt round-robin to `workers` workers (so each gets an even share). */
export function shares(n: number, workers: number): number[][] {
  const out: number[][] = Array.from({ length: Math.max(1, workers) }, () => []);
  for (let i = 0; i < n; i++) out[i % out.length]!.push(i);
  return out;
}

/** Which worker drives node `index` (the same dealing as shares()). */
export function ownerOf(index: number, workers: number): number {
  return index % Math.max(1, workers);
}

/**
 * A phase is over when every worker reports all its nodes satisfied; it ended at the latest
 * of those reports (each stamped by its worker when its last node got there). A worker may
 * report "not satisfied" again (a node lost a peer): then it counts again from its next report.
 */
export class PhaseBoard {
  private readonly state: ({ ok: boolean; at: number } | undefined)[];

  constructor(workers: number) {
    this.state = Array.from({ length: workers }, () => undefined);
  }

  report(worker: number, ok: boolean, at: number): void {
    this.state[worker] = { ok, at };
  }

  /** The time the phase ended (ms, the workers' clock), or undefined while it is not over. */
  doneAt(): number | undefined {
    if (!this.state.every((s) => s?.ok)) return undefined;
    return Math.max(...this.state.map((s) => s!.at));
  }
}

/**
 * How busy the load generator was over `wallS`: all its processes' CPU seconds over the CPU
 * seconds its cores offered, and the busiest single process over the wall time (one process
 * can only use one core: near 100% it is a bottleneck even with cores to spare).
 */
export function loadgenBusy(
  cpuS: { parent: number; workers: number[] },
  wallS: number,
  cores: number,
): { total: number; busiestWorker: number } {
  if (wallS <= 0) return { total: 0, busiestWorker: 0 };
  const all = cpuS.parent + cpuS.workers.reduce((a, b) => a + b, 0);
  return { total: all / (wallS * Math.max(1, cores)), busiestWorker: Math.max(0, ...cpuS.workers) / wallS };
}

/** Above this share the load generator may be what a time measures. */
export const SATURATED = 0.9;

/**
 * Each size's wall-time limit for one run, from "100:300,1000:900" (nodes:seconds): the limit of
 * the size itself, else of the next larger size listed, else of the largest listed.
 */
export function parseLimits(spec: string): Map<number, number> {
  const m = new Map<number, number>();
  for (const part of spec
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [n, s] = part.split(":").map(Number);
    if (!Number.isInteger(n) || n! <= 0 || !Number.isFinite(s) || s! <= 0)
      throw new Error(`--size-limits wants nodes:seconds pairs like 100:300,1000:900, not "${part}"`);
    m.set(n!, s!);
  }
  if (!m.size) throw new Error("--size-limits is empty; give nodes:seconds pairs like 100:300,1000:900");
  return m;
}

export function limitFor(n: number, limits: Map<number, number>): number {
  const sizes = [...limits.keys()].sort((a, b) => a - b);
  const at = sizes.find((s) => s >= n) ?? sizes.at(-1)!;
  return limits.get(at)!;
}

/** Spread of a list of seconds as "min-max s" (empty for fewer than two). */
export function spread(xs: number[], fmt: (x: number) => number): string {
  return xs.length > 1 ? `${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))} s` : "";
}

/** `k` indices spread evenly over 0..n-1 (the nodes that change endpoints). */
export function spreadIndices(n: number, k: number): number[] {
  const m = Math.min(n, Math.max(0, k));
  return Array.from({ length: m }, (_, i) => Math.floor((i * n) / m));
}
