import { type ChildProcess, fork } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "../../src/paths.ts";
import { PhaseBoard } from "./aggregate.ts";
import type { FromWorker, Request, Stats } from "./protocol.ts";
import type { Watch } from "./sim-node.ts";

/**
 * The load generator's worker processes (bench/control/worker.ts), each driving a share of the
 * simulated nodes. They inherit this process's CPU affinity (the load generator's cores).
 */
export class Workers {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private board: { phase: string; board: PhaseBoard; done(at: number): void } | undefined;
  private failure: Error | undefined;

  private constructor(private readonly procs: ChildProcess[]) {
    procs.forEach((p, w) => {
      p.on("message", (m: FromWorker) => this.onMessage(w, m));
      p.on("exit", (code, sig) => {
        this.failure ??= new Error(`load generator worker ${w} exited (${code ?? sig})`);
        for (const x of this.waiting.values()) x.reject(this.failure);
        this.waiting.clear();
      });
    });
  }

  static start(count: number): Workers {
    const loader = join(ROOT, "node_modules", "tsx", "dist", "loader.mjs");
    const entry = join(ROOT, "bench", "control", "worker.ts");
    // WG3_LOADGEN_CPU_PROF=DIR: each worker writes a V8 CPU profile there when it exits (to see where the load generator's time goes).
    const prof = process.env.WG3_LOADGEN_CPU_PROF;
    const execArgv = ["--no-warnings", "--import", loader, ...(prof ? ["--cpu-prof", "--cpu-prof-dir", prof] : [])];
    return new Workers(Array.from({ length: count }, () => fork(entry, [], { execArgv, stdio: "inherit" })));
  }

  get count(): number {
    return this.procs.length;
  }

  private onMessage(w: number, m: FromWorker): void {
    if ("ev" in m) {
      if (!this.board || m.phase !== this.board.phase) return;
      this.board.board.report(w, m.ok, m.at);
      const at = this.board.board.doneAt();
      if (at !== undefined) this.board.done(at);
      return;
    }
    const x = this.waiting.get(m.seq);
    this.waiting.delete(m.seq);
    if (m.ok) x?.resolve(m.data);
    else x?.reject(new Error(m.error));
  }

  call<T = unknown>(w: number, r: Request): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(seq, { resolve: resolve as (v: unknown) => void, reject });
      this.procs[w]!.send({ ...r, seq });
    });
  }

  all<T = unknown>(r: Request | ((w: number) => Request)): Promise<T[]> {
    return Promise.all(this.procs.map((_, w) => this.call<T>(w, typeof r === "function" ? r(w) : r)));
  }

  /**
   * Start a phase: every worker watches its nodes for `watch`. Resolves once all workers
   * listen; `done` then settles with the time (epoch ms) the last worker's nodes got there.
   */
  async watch(phase: string, watch: Watch, expecting: (w: number) => number[] = () => []): Promise<{ done: Promise<number> }> {
    let done!: (at: number) => void;
    const p = new Promise<number>((r) => {
      done = r;
    });
    this.board = { phase, board: new PhaseBoard(this.count), done };
    await this.all((w) => ({ op: "watch", phase, watch, expecting: expecting(w) }));
    return { done: p };
  }

  /** Every worker's counters and CPU seconds so far. */
  stats(): Promise<Stats[]> {
    return this.all<Stats>({ op: "stats" });
  }

  async stop(): Promise<void> {
    await Promise.race([this.all({ op: "exit" }).catch(() => {}), new Promise((r) => setTimeout(r, 5_000))]);
    const gone = (p: ChildProcess) => p.exitCode !== null || p.signalCode !== null;
    const exiting = this.procs.filter((p) => !gone(p));
    // A profiling worker writes its profile as it exits: give it time to.
    if (process.env.WG3_LOADGEN_CPU_PROF) await Promise.all(exiting.map((p) => new Promise((r) => (gone(p) ? r(0) : p.once("exit", r)))));
    for (const p of exiting) if (!gone(p)) p.kill("SIGKILL");
  }
}
