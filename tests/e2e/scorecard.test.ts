import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Scorecard } from "../../src/lab/scorecard.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";
import { startTs } from "../support/start-ts.ts";

async function scorecard(args: string[]): Promise<{ cards: Scorecard[]; skipped: string[] }> {
  const r = await startTs(["scorecard", ...args, "--json"]);
  expect(r.code, r.stderr).toBe(0);
  const j = JSON.parse(r.stdout) as { scorecards: Scorecard[]; skipped: string[] };
  return { cards: j.scorecards, skipped: j.skipped };
}

describe("scorecard: measured in the lab, read from real captures", () => {
  let lab: LabHandle;
  const dir = mkdtempSync(join(tmpdir(), "wg3-scorecard-"));

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-1", { lab: testLabName("score") });
  });
  afterAll(async () => {
    await lab?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const read = async () => (await scorecard(["recipe-1", "--lab", lab.plan.lab, "--no-start"])).cards[0]!;

  it("before the exercises are solved: unreachable, and the marker reaches no one", async () => {
    const c = await read();
    expect(c.lab).toBe(lab.plan.lab);
    expect(c.reach).toMatchObject({ target: "172.16.100.2", reached: false });
    expect(c.reach.rttMs).toBeUndefined();
    expect(c.payload.delivered.reads).toBe(false);
    expect(c.payload.middle[0]).toMatchObject({ node: "lighthouse", reads: false });
    // Each lighthouse and client holds its own key and no peer's yet (the skeleton configs).
    expect(c.keys.map((k) => [k.node, k.others])).toEqual([
      ["lighthouse", 0],
      ["home", 0],
      ["roaming", 0],
    ]);
  });

  it("with the lighthouse capturing but roaming's tunnel down, the capture runs and has no marker", async () => {
    await lab.solve("peers");
    await lab.solve("up");
    expect(await lab.succeeds("roaming", "wg-quick down recipe-1")).toBe(true);
    const c = await read();
    expect(c.reach.reached).toBe(false);
    expect(c.payload.middle[0]!.error).toBeUndefined();
    expect(c.payload.middle[0]!.reads).toBe(false);
    expect(c.payload.delivered.reads).toBe(false);
  });

  it("solved: two hops through the lighthouse, an RTT, and the lighthouse's capture has the marker in clear", async () => {
    expect(await lab.succeeds("roaming", "wg-quick up recipe-1")).toBe(true);
    const svg = join(dir, "scorecard.svg");
    const r = await startTs(["scorecard", "recipe-1", "--lab", lab.plan.lab, "--no-start", "--svg", svg]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /recipe-1\s+roaming -> 172\.16\.100\.2\s+2 \(172\.16\.100\.1 > 172\.16\.100\.2\)\s+[\d.]+ ms\s+lighthouse: yes/,
    );
    expect(readFileSync(svg, "utf8")).toContain(">lighthouse: yes</text>");
    const c = await read();
    expect(c.reach).toMatchObject({ reached: true, hops: 2, path: ["172.16.100.1", "172.16.100.2"] });
    expect(c.reach.rttMs).toBeGreaterThan(0);
    expect(c.payload.delivered.reads).toBe(true);
    expect(c.payload.middle[0]).toMatchObject({ node: "lighthouse", reads: true });
    expect(c.keys.map((k) => [k.node, k.own, k.others, k.from])).toEqual([
      ["lighthouse", 1, 2, "wg show"],
      ["home", 1, 1, "wg show"],
      ["roaming", 1, 1, "wg show"],
    ]);
    expect(c.handWritten.commands).toBe(3);
    expect(c.handWritten.configLines.lighthouse).toBeGreaterThan(c.handWritten.configLines.roaming!);
    // The probes leave nothing behind in the lab they only read.
    expect((await lab.sh("lighthouse", "ls /tmp | grep -c wg3-scorecard")).stdout.trim()).toBe("0");
    expect((await lab.engine.listContainers({ lab: lab.plan.lab })).every((x) => x.state === "running")).toBe(true);
  });

  it("a recipe that is not running is started, solved, measured and stopped again", async () => {
    const own = testLabName("score0");
    const { cards } = await scorecard(["recipe-0", "--lab", own]);
    expect(cards[0]).toMatchObject({ recipe: "recipe-0", lab: own, reach: { reached: true, hops: 1 } });
    expect(cards[0]!.payload.middle[0]).toMatchObject({ node: "peer-2", reads: false });
    expect(cards[0]!.payload.delivered.reads).toBe(true);
    expect(await lab.engine.listContainers({ lab: own })).toEqual([]);
  });
});
