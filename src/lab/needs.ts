import { type Action, stepName } from "../recipe/types.ts";

/**
 * Run setup steps by what they need: a step with `needs` starts as soon as the steps it names
 * are done, beside others; one without waits for every step before it. Resolves once all have
 * ended; if any failed, rejects with the first failure (in recipe order) only then, so nothing
 * is still running when the caller cleans up.
 */
export async function runByNeeds(steps: Action[], run: (step: Action) => Promise<void>): Promise<void> {
  const all: Promise<void>[] = [];
  const named = new Map<string, Promise<void>>();
  for (const step of steps) {
    // The loader has checked that every name in `needs` is an earlier step's.
    const before = step.needs ? step.needs.map((n) => named.get(n)!) : [...all];
    const done = Promise.all(before).then(() => run(step));
    all.push(done);
    const name = stepName(step);
    if (name) named.set(name, done);
  }
  const results = await Promise.allSettled(all);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}
