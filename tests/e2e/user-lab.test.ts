/**
 * Tests never touch what the user runs. The default recipe-3 lab is started the way a user
 * does (./start.ts recipe-3), or, when the user already runs it, taken as it is and only
 * looked at; a test lab of the same recipe then runs beside it, start to solve to stop. The
 * default lab keeps its containers, its workspace and its check answer.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureEngine } from "../../src/engine/ensure.ts";
import { DEFAULT_LAB, readPlan } from "../../src/lab/plan.ts";
import { hasTmux, sessionExists } from "../../src/workspace/tmux.ts";
import { defaultLabBusy, defaultLabsRunning, testLabName } from "../support/labs.ts";
import { startTs } from "../support/start-ts.ts";

const RECIPE = "recipe-3";
const engine = await ensureEngine({});
const usersOwn = (await defaultLabsRunning(engine)).includes(RECIPE);
// Another default lab holding recipe-3's subnets would stop us starting it; a default lab
// started from another checkout has its plan (keys, addresses) there, so check cannot read it
// from here. Either way: skip, touching nothing.
const blocked = usersOwn
  ? readPlan(DEFAULT_LAB, RECIPE)
    ? undefined
    : `skipped: the default ${RECIPE} runs from another checkout (its plan is not in this one's state folder)`
  : await defaultLabBusy(engine, ["recipe-1", "recipe-2"]);

const cli = (...args: string[]) => startTs(args);

interface Snapshot {
  ids: string[];
  check: { code: number | null; stdout: string };
  workspace: boolean;
}

async function snapshot(): Promise<Snapshot> {
  const ids = (await engine.listContainers({ lab: "default", recipe: RECIPE })).map((c) => `${c.name} ${c.id} ${c.state}`).sort();
  const check = await cli("check", RECIPE);
  return {
    ids,
    check: { code: check.code, stdout: check.stdout },
    workspace: (await hasTmux()) && (await sessionExists(`wg3-${RECIPE}`)),
  };
}

describe.skipIf(blocked)(`a test lab beside the user's default ${RECIPE}${blocked ? ` (${blocked})` : ""}`, () => {
  let before: Snapshot;
  const lab = testLabName("beside");

  beforeAll(async () => {
    if (!usersOwn) {
      const r = await cli(RECIPE, "--no-attach");
      expect(r.code, r.stderr).toBe(0);
    }
    before = await snapshot();
    // Positive control: there is something to keep (five running containers, a check answer).
    expect(before.ids).toHaveLength(5);
    expect(before.ids.every((l) => l.endsWith(" running"))).toBe(true);
    expect(before.check.stdout).toMatch(/exercises pass\.|not done yet\./);
  });
  afterAll(async () => {
    await cli("stop", RECIPE, "--lab", lab);
    if (!usersOwn) await cli("stop", RECIPE);
  });

  it("the test lab starts, passes every check and stops, on its own names and subnets", async () => {
    expect((await cli(RECIPE, "--lab", lab, "--no-attach")).code).toBe(0);
    // Negative control, in JSON as tools read it: not done yet, each with its hint, exit 1.
    const fresh = await cli("check", RECIPE, "--lab", lab, "--json");
    expect(fresh.code).toBe(1);
    const before = JSON.parse(fresh.stdout) as { passed: number; total: number; exercises: { state: string; hint?: string }[] };
    expect(before.passed).toBeLessThan(before.total);
    expect(before.exercises.filter((x) => x.state !== "pass").every((x) => Boolean(x.hint))).toBe(true);
    // One exercise named: only it is graded; a name the recipe lacks is one sentence, exit 2.
    const one = JSON.parse((await cli("check", RECIPE, "nodes-online", "--lab", lab, "--json")).stdout) as {
      total: number;
      exercises: { id: string }[];
    };
    expect(one.exercises.map((x) => x.id)).toEqual(["nodes-online"]);
    const typo = await cli("check", RECIPE, "nodes-onlin", "--lab", lab);
    expect(typo.code).toBe(2);
    expect(typo.stderr.trim()).toMatch(/^recipe-\d has no exercise "nodes-onlin"; its exercises are: .*\.$/);
    expect((await cli("solve", RECIPE, "--lab", lab)).code).toBe(0);
    const check = await cli("check", RECIPE, "--lab", lab);
    expect(check.code, check.stdout).toBe(0);
    const json = JSON.parse((await cli("check", RECIPE, "--lab", lab, "--json")).stdout);
    expect(json).toMatchObject({ recipe: RECIPE, lab, total: json.exercises.length, passed: json.exercises.length });
    expect(json.exercises.every((x: { state: string; hint?: string }) => x.state === "pass" && x.hint === undefined)).toBe(true);
    const mine = await engine.listContainers({ lab, recipe: RECIPE });
    expect(mine.map((c) => c.name).every((n) => n.startsWith(`${lab}-`))).toBe(true);
    expect((await cli("stop", RECIPE, "--lab", lab)).code).toBe(0);
  });

  it("the default lab is untouched: same containers, same workspace, same check answer", async () => {
    expect(await snapshot()).toEqual(before);
  });
});
