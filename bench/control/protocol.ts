import type { Watch } from "./sim-node.ts";

/** What the load generator's parent asks of a worker process (each answered by `seq`). */
export type Request =
  | { op: "init"; serverUrl: string; authKey: string; realistic: boolean }
  /** Register these nodes (at most `concurrency` at once), each then holding a map stream. */
  | { op: "register"; indices: number[]; concurrency: number }
  /**
   * From now on report when all this worker's nodes satisfy `watch` (phase events), counting
   * also the nodes in `expecting` that are yet to register (so an empty worker is not "done").
   */
  | { op: "watch"; phase: string; watch: Watch; expecting?: number[] }
  /** The server's IDs of these nodes (from their full netmaps). */
  | { op: "ids"; indices: number[] }
  | { op: "move"; index: number; endpoints: string[] }
  /** Close one node's stream and connection; it no longer counts in any watch. */
  | { op: "close-node"; index: number }
  | { op: "stats" }
  | { op: "exit" };

/** Counters so far; `nodes` holding a stream, `good` satisfying the current watch. */
export type Stats = { bytes: number; resets: number; cpuS: number; nodes: number; good: number };

export type Reply = { seq: number; ok: true; data?: unknown } | { seq: number; ok: false; error: string };

/** Unasked: all of this worker's nodes satisfy (or no longer satisfy) the phase's watch, at `at` (epoch ms). */
export type PhaseEvent = { ev: "phase"; phase: string; ok: boolean; at: number };

export type FromWorker = Reply | PhaseEvent;

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export const nowMs = () => performance.timeOrigin + performance.now();
