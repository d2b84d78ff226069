import { TIMEOUT } from "./timeouts.ts";

export interface EventuallyOptions {
  /** The deadline, in ms from the first try (a name from timeouts.ts). Default TIMEOUT.poll. */
  timeout?: number;
  /** Longest pause between tries, in ms: pauses start at 100 ms (or this, if smaller) and double up to it. 0: no pause. Default 1000. */
  interval?: number;
  /** What to report on timeout instead of the probe's last answer (e.g. the tail of a process's output). */
  seen?: () => unknown;
}

/**
 * Poll `probe` until it answers a truthy value, and return that value. A falsy answer or a
 * thrown error means "not yet": to make a timeout say what the probe saw, throw an Error that
 * says it (`throw new Error(\`exit ${r.exitCode}: ${r.stderr}\`)`). Past the deadline, throws
 * "timed out after N ms (K tries) waiting for WHAT; last seen: ...". The one way tests wait;
 * never a fixed sleep.
 */
export async function eventually<T>(
  what: string,
  probe: () => T | undefined | null | false | "" | 0 | Promise<T | undefined | null | false | "" | 0>,
  { timeout = TIMEOUT.poll, interval = 1000, seen }: EventuallyOptions = {},
): Promise<T> {
  const t0 = performance.now();
  let last: unknown = "(no try finished)";
  let delay = Math.min(100, interval);
  for (let tries = 1; ; tries++) {
    try {
      const v = await probe();
      if (v) return v as T;
      last = v;
    } catch (e) {
      last = e instanceof Error ? e.message : e;
    }
    const elapsed = performance.now() - t0;
    if (elapsed > timeout) {
      const said = seen ? seen() : last;
      throw new Error(
        `timed out after ${Math.round(elapsed)} ms (${tries} tries) waiting for ${what}; last seen: ${typeof said === "string" ? said : JSON.stringify(said)}`,
      );
    }
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, interval);
  }
}

/** Like eventually(), for a condition whose answer is a boolean; returns how long it took, in seconds. */
export async function timeUntil(what: string, probe: () => boolean | Promise<boolean>, opts: EventuallyOptions = {}): Promise<number> {
  const t0 = performance.now();
  await eventually(what, probe, opts);
  return (performance.now() - t0) / 1000;
}

/**
 * eventually() with the deadline as a plain number, for the call sites in tests/integration
 * written before eventually() existed; new tests call eventually().
 */
export function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs: number = TIMEOUT.poll): Promise<T> {
  return eventually(what, probe, { timeout: timeoutMs });
}
