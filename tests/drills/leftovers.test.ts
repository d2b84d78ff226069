import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seededRandom } from "../../bench/lib/stats.ts";
import type { Engine } from "../../src/engine/engine.ts";
import { hasTmux } from "../../src/workspace/tmux.ts";
import { testLabName } from "../support/labs.ts";
import { startTs } from "../support/start-ts.ts";
import { ALL, engine, type Leftovers, NOTHING, ours, report } from "./lib.ts";

const RECIPE = "recipe-1";
const LAB = testLabName("leftovers");
const MINE = { lab: LAB, recipe: RECIPE };
const CYCLES = ALL ? 20 : 3;
const INTERRUPTS = 10;

describe("no leftovers: start/stop cycles and Ctrl-C during starts, through the real CLI", () => {
  let e: Engine;
  let before: Leftovers;
  const startMs: number[] = [];

  beforeAll(async () => {
    e = await engine();
    // A lab someone left running would make every assertion below meaningless: say so.
    expect(await ours(e, MINE), `${RECIPE} must not be running before the drill`).toEqual(NOTHING);
    before = await ours(e);
  });
  afterAll(async () => {
    await startTs(["stop", RECIPE, "--lab", LAB]);
  });

  it(`${CYCLES} start/stop cycles of ${RECIPE} leave no container, network, volume, tmux session or state`, async () => {
    for (let i = 0; i < CYCLES; i++) {
      const up = await startTs([RECIPE, "--no-attach", "--lab", LAB]);
      expect(up.code, up.stderr).toBe(0);
      startMs.push(up.ms);
      // Positive control: the lab really was there (so "nothing afterwards" means something).
      const running = await ours(e, MINE);
      expect(running.containers).toHaveLength(4);
      expect(running.networks).toHaveLength(2);
      expect(running.planDirs).toHaveLength(2);
      if (await hasTmux()) expect(running.sessions).toEqual([`wg3-${LAB}-${RECIPE}`]);
      const down = await startTs(["stop", RECIPE, "--lab", LAB]);
      expect(down.code, down.stderr).toBe(0);
      expect(await ours(e, MINE), `after cycle ${i + 1}`).toEqual(NOTHING);
    }
    expect(await ours(e)).toEqual(before);
    report(`${CYCLES} start/stop cycles of ${RECIPE}: nothing left; start took ${startMs.map((m) => (m / 1000).toFixed(1)).join(", ")} s`);
  });

  it.runIf(ALL)(`${INTERRUPTS} starts of ${RECIPE} interrupted by SIGINT at random moments leave nothing behind`, async () => {
    const seed = Number(process.env.WG3_DRILL_SEED ?? Date.now() % 1_000_000);
    const random = seededRandom(seed);
    const typical = [...startMs].sort((a, b) => a - b)[Math.floor(startMs.length / 2)] ?? 3000;
    const outcomes: string[] = [];
    let interrupted = 0;
    for (let i = 0; i < INTERRUPTS; i++) {
      // Anywhere from process start-up to the end of a typical start.
      const at = Math.round(random() * typical);
      const r = await startTs([RECIPE, "--no-attach", "--lab", LAB], { interruptAfterMs: at });
      if (r.code === 0) {
        outcomes.push(`${at}ms: finished first`);
        expect((await startTs(["stop", RECIPE, "--lab", LAB])).code).toBe(0);
      } else {
        interrupted++;
        // Our handler exits 130; before it is installed (Node still loading), SIGINT kills the process.
        expect(r.code === 130 || r.signal === "SIGINT", `exit ${r.code} ${r.signal}: ${r.stderr}`).toBe(true);
        outcomes.push(`${at}ms: ${r.code === 130 ? "cleaned up, exit 130" : "killed while loading"}`);
      }
      // No waiting: the interrupted command itself must have removed what it created.
      expect(await ours(e, MINE), `after interruption at ${at} ms (seed ${seed}): ${r.stderr}`).toEqual(NOTHING);
    }
    expect(await ours(e)).toEqual(before);
    report(`SIGINT drill (seed ${seed}, typical start ${Math.round(typical)} ms): ${outcomes.join("; ")}`);
    // Enough of them must really have interrupted a start, or the drill proved nothing.
    expect(interrupted).toBeGreaterThanOrEqual(INTERRUPTS / 2);
  });
});
