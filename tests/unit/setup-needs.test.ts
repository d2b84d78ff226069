import { describe, expect, it } from "vitest";
import { runByNeeds } from "../../src/lab/needs.ts";
import type { Action } from "../../src/recipe/types.ts";

/** A step as the scheduler sees it: its name and needs; `run` holds how long it takes. */
const step = (id: string, ms: number, needs?: string[]): Action => ({ id, needs, run: String(ms), node: "n", timeout: 60, secret: false });

/** Run `steps`, each taking its ms; returns start and end of each, in ms since the start. */
async function timeline(steps: Action[], fail?: string) {
  const t0 = Date.now();
  const seen: Record<string, { start: number; end: number }> = {};
  const error = await runByNeeds(steps, async (s) => {
    const start = Date.now() - t0;
    await new Promise((r) => setTimeout(r, Number(s.run)));
    seen[s.id!] = { start, end: Date.now() - t0 };
    if (s.id === fail) throw new Error(`${s.id} failed`);
  }).catch((e: Error) => e);
  return { seen, error };
}

describe("setup steps by their needs", () => {
  it("without needs, one after another", async () => {
    const { seen } = await timeline([step("a", 30), step("b", 30), step("c", 30)]);
    expect(seen.b!.start).toBeGreaterThanOrEqual(seen.a!.end);
    expect(seen.c!.start).toBeGreaterThanOrEqual(seen.b!.end);
  });

  it("a step with needs starts when they are done, beside the others; a step without waits for all before it", async () => {
    // a; then slow and quick (both need only a) side by side; last, with no needs, waits for all three.
    const { seen } = await timeline([step("a", 20), step("slow", 200, ["a"]), step("quick", 20, ["a"]), step("last", 10)]);
    expect(seen.slow!.start).toBeGreaterThanOrEqual(seen.a!.end);
    expect(seen.quick!.start).toBeLessThan(seen.slow!.end); // side by side
    expect(seen.last!.start).toBeGreaterThanOrEqual(Math.max(seen.slow!.end, seen.quick!.end)); // the barrier
  });

  it("a failure is thrown only after the steps still running have ended, and its dependents never start", async () => {
    const { seen, error } = await timeline(
      [step("a", 10), step("bad", 20, ["a"]), step("long", 150, ["a"]), step("after", 10, ["bad"])],
      "bad",
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe("bad failed");
    expect(seen.long).toBeDefined(); // it ran to its end before runByNeeds rejected
    expect(seen.after).toBeUndefined();
  });
});
