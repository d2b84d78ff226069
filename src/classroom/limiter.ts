/**
 * Checks and solutions run commands in a seat's containers: one seat clicking "check" in a loop
 * must not slow the class down. Per key (a seat): one at a time, and at most `perMinute` starts
 * in any sliding minute.
 */
export class SeatLimiter {
  readonly #running = new Set<string>();
  readonly #starts = new Map<string, number[]>();

  constructor(
    readonly perMinute = 12,
    private readonly now: () => number = Date.now,
  ) {}

  /** undefined when `key` may start now (and it is then counted as running), else seconds to wait. */
  tryStart(key: string): { retryAfterS: number; why: string } | undefined {
    if (this.#running.has(key)) return { retryAfterS: 2, why: "a check or solution of this seat is still running" };
    const t = this.now();
    const recent = (this.#starts.get(key) ?? []).filter((s) => t - s < 60_000);
    if (recent.length >= this.perMinute) {
      const retryAfterS = Math.ceil((60_000 - (t - recent[0]!)) / 1000);
      return { retryAfterS, why: `at most ${this.perMinute} checks a minute per seat` };
    }
    recent.push(t);
    this.#starts.set(key, recent);
    this.#running.add(key);
    return undefined;
  }

  finish(key: string): void {
    this.#running.delete(key);
  }
}
