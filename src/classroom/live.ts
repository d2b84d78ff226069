import { type FSWatcher, statSync, watch } from "node:fs";
import { type ClassState, classDir, classFile, readClass, type Seat } from "./state.ts";

/** What changed in the class's seats between two reads of its state. */
export interface SeatChanges {
  added: Seat[];
  removed: Seat[];
  /** Seats brought back fresh (`classroom reset`) since the last read. */
  reset: Seat[];
}

/** Seats added, removed or reset from `before` to `after` (a seat is the same seat while its token is). */
export function seatChanges(before: ClassState, after: ClassState): SeatChanges {
  const old = new Map(before.seats.map((s) => [s.n, s]));
  const now = new Map(after.seats.map((s) => [s.n, s]));
  const same = (a: Seat, b: Seat) => a.token === b.token && a.lab === b.lab;
  return {
    added: after.seats.filter((s) => !old.has(s.n) || !same(old.get(s.n)!, s)),
    removed: before.seats.filter((s) => !now.has(s.n) || !same(now.get(s.n)!, s)),
    reset: after.seats.filter((s) => old.has(s.n) && same(old.get(s.n)!, s) && old.get(s.n)!.resetAt !== s.resetAt),
  };
}

/**
 * The class as a running server sees it: `classroom add/remove/reset` change the state file,
 * and the server follows. Every request reads `current()`, which looks at the file first (a
 * stat), so a seat removed a moment ago is refused at once; a watch on the folder tells the
 * facilitator's view of changes without waiting for a request.
 */
export class LiveClass {
  #state: ClassState;
  #stamp: string;
  #watcher?: FSWatcher;
  readonly #listeners = new Set<(c: SeatChanges, state: ClassState) => void>();

  constructor(state: ClassState) {
    this.#state = state;
    this.#stamp = this.#fileStamp();
  }

  /** The class now. A state file gone (`classroom down` on its way) leaves the last one read. */
  current(): ClassState {
    const stamp = this.#fileStamp();
    if (stamp === this.#stamp) return this.#state;
    this.#stamp = stamp;
    const next = readClass(this.#state.name);
    if (!next) return this.#state;
    const changes = seatChanges(this.#state, next);
    this.#state = next;
    if (changes.added.length || changes.removed.length || changes.reset.length) for (const fn of this.#listeners) fn(changes, next);
    return next;
  }

  /** Hear of seats added, removed or reset; returns the function that stops listening. */
  onChange(fn: (c: SeatChanges, state: ClassState) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Follow the state file until `close()`. */
  watch(): void {
    try {
      this.#watcher = watch(classDir(this.#state.name), () => this.current());
    } catch {
      // No folder to watch (a test's class held in memory): requests still read it.
    }
  }

  close(): void {
    this.#watcher?.close();
  }

  #fileStamp(): string {
    try {
      const s = statSync(classFile(this.#state.name));
      return `${s.ino}:${s.mtimeMs}:${s.size}`;
    } catch {
      return "absent";
    }
  }
}
