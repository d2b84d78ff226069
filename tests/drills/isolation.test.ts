import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine/engine.ts";
import { runningPlan } from "../../src/lab/lifecycle.ts";
import type { LabPlan } from "../../src/lab/plan.ts";
import { testLabName } from "../support/labs.ts";
import { startTs } from "../support/start-ts.ts";
import { ALL, engine, NOTHING, ours, report } from "./lib.ts";

/**
 * Isolation no other lab can undo: with a lab running, start and stop copies of every recipe
 * beside it; after each, the running lab's home LAN is still unreachable from its roaming
 * peer except through the tunnel. (netavark's "isolate" chains are unhooked from FORWARD
 * whenever any isolated network is removed, which made every lab routable through the host.)
 */
const RESIDENT = { lab: testLabName("iso-home"), recipe: "recipe-1" };
const OTHERS = ["recipe-0", "recipe-1", "recipe-2", "recipe-3"];
const CYCLES = ALL ? 10 : OTHERS.length;

describe("isolation survives other labs' start and stop", () => {
  let e: Engine;
  let plan: LabPlan;
  const sh = (node: string, script: string) => e.sh(plan.nodes[node]!.container, script, { timeoutMs: 20_000 });
  const ok = async (node: string, script: string) => (await sh(node, script)).exitCode === 0;

  /** Roaming reaches the home router on the internet side (the probe works), never the home LAN. */
  async function expectIsolated(when: string): Promise<void> {
    const router = plan.nodes["home-router"]!.ip;
    expect(await ok("roaming", `ping -c1 -W2 ${router.roaming}`), `${when}: roaming pings the home router's internet side`).toBe(true);
    expect(await ok("roaming", `ping -c1 -W1 ${plan.nodes.home!.ip.home}`), `${when}: roaming must not reach home on its LAN`).toBe(false);
    expect(await ok("roaming", `ping -c1 -W1 ${router.home}`), `${when}: roaming must not reach the router's LAN side`).toBe(false);
  }

  beforeAll(async () => {
    e = await engine();
    const up = await startTs([RESIDENT.recipe, "--lab", RESIDENT.lab, "--no-attach"]);
    expect(up.code, up.stderr).toBe(0);
    plan = await runningPlan(e, RESIDENT.recipe, RESIDENT.lab);
  });
  afterAll(async () => {
    await startTs(["stop", RESIDENT.recipe, "--lab", RESIDENT.lab]);
    expect(await ours(e, RESIDENT)).toEqual(NOTHING);
  });

  it(`the resident lab stays isolated across ${CYCLES} start/stop cycles of other labs`, async () => {
    await expectIsolated("before any other lab");
    const seen: string[] = [];
    for (let i = 0; i < CYCLES; i++) {
      const recipe = OTHERS[i % OTHERS.length]!;
      const lab = testLabName(`iso-${i}`);
      const up = await startTs([recipe, "--lab", lab, "--no-attach"]);
      expect(up.code, up.stderr).toBe(0);
      expect((await startTs(["stop", recipe, "--lab", lab])).code).toBe(0);
      expect(await ours(e, { lab, recipe })).toEqual(NOTHING);
      await expectIsolated(`after ${recipe} --lab ${lab} started and stopped`);
      seen.push(recipe);
    }
    report(`resident ${RESIDENT.recipe} stayed isolated after start/stop of ${seen.join(", ")}`);
  });
});
