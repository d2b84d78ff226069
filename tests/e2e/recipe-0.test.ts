import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";

describe("recipe-0: a three-peer mesh built by hand", () => {
  let lab: LabHandle;
  const peers = ["peer-1", "peer-2", "peer-3"];
  const overlay = (p: string) => `172.16.100.${p.slice(-1)}`;

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-0", { lab: testLabName("r0") });
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("starts with the configs left for the attendee: no peer reaches 172.16.100.x", async () => {
    for (const p of peers) {
      for (const q of peers.filter((x) => x !== p)) expect(await lab.succeeds(p, `ping -c1 -W1 ${overlay(q)}`)).toBe(false);
    }
    expect((await lab.checkAll()).every((c) => !c.ok)).toBe(true);
  });

  it("after the reference solution, every peer pings both others", async () => {
    await lab.solve();
    for (const p of peers) {
      for (const q of peers.filter((x) => x !== p)) expect(await lab.succeeds(p, `ping -c1 -W2 ${overlay(q)}`)).toBe(true);
    }
  });

  it("wg show lists two peers, each with a recent handshake", async () => {
    for (const p of peers) {
      const hs = await eventually(`two handshakes on ${p}`, async () => {
        const out = (await lab.sh(p, "wg show recipe-0 latest-handshakes")).stdout.trim().split("\n");
        const recent = out.filter((l) => Number(l.split(/\s+/)[1]) > Date.now() / 1000 - 180);
        return recent.length === 2 ? out : undefined;
      });
      expect(hs).toHaveLength(2);
    }
    expect((await lab.checkAll()).map((c) => [c.exercise, c.ok])).toEqual([
      ["configure", true],
      ["up", true],
      ["mesh", true],
    ]);
  });
});
