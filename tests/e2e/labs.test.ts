import { afterAll, describe, expect, it } from "vitest";
import { ensureEngine } from "../../src/engine/ensure.ts";
import { UserError } from "../../src/errors.ts";
import { up } from "../../src/lab/lifecycle.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { defaultLabBusy, testLabName } from "../support/labs.ts";

const engine = await ensureEngine({});
const busy = await defaultLabBusy(engine);

describe("labs side by side, and starting twice", () => {
  const started: LabHandle[] = [];
  const a = testLabName("labs-a");
  afterAll(async () => {
    for (const l of started) await l.stop();
  });

  it("a second copy with --lab has its own names and subnets, and neither reaches the other", async () => {
    const main = await LabHandle.start("recipe-0", { lab: a });
    started.push(main);
    const b = await LabHandle.start("recipe-0", { lab: testLabName("labs-b") });
    started.push(b);
    expect(b.container("peer-1")).toBe(`${b.plan.lab}-wg-recipe-0_peer-1`);
    expect(b.ip("peer-1", "mesh")).not.toBe(main.ip("peer-1", "mesh"));
    // The probe works: each lab's peers reach each other on their own network...
    expect(await b.succeeds("peer-1", `ping -c1 -W1 ${b.ip("peer-2", "mesh")}`)).toBe(true);
    // ...but not the other lab's.
    expect(await b.succeeds("peer-1", `ping -c1 -W1 ${main.ip("peer-2", "mesh")}`)).toBe(false);
    expect(await main.succeeds("peer-1", `ping -c1 -W1 ${b.ip("peer-2", "mesh")}`)).toBe(false);
    await main.solve();
    await b.solve();
    expect((await main.checkAll()).filter((c) => !c.ok)).toEqual([]);
    expect((await b.checkAll()).filter((c) => !c.ok)).toEqual([]);
  });

  it("starting a running lab is a no-op that says so", async () => {
    const r = await up("recipe-0", { engine, lab: a });
    expect(r.alreadyRunning).toBe(true);
  });

  it("a test handle refuses to adopt a lab it did not start", async () => {
    await expect(LabHandle.start("recipe-0", { lab: a })).rejects.toThrow(/started by someone else/);
  });

  // The clash message exists only for the default lab (other labs pick free subnets).
  it.skipIf(busy)(`a subnet held by another lab is named, and nothing is created${busy ? ` (${busy})` : ""}`, async () => {
    // recipe-2 (default lab) holds 192.168.99.0/24, which recipe-3 needs too.
    const r2 = await LabHandle.start("recipe-2", { lab: "default" });
    started.push(r2);
    const before = (await engine.listContainers({ lab: "default", recipe: "recipe-3" })).length;
    await expect(up("recipe-3", { engine })).rejects.toThrow(UserError);
    await expect(up("recipe-3", { engine })).rejects.toThrow(/Subnet 192\.168\.99\.0\/24 .* is already used by lab "default" \(recipe-2\)/);
    expect((await engine.listContainers({ lab: "default", recipe: "recipe-3" })).length).toBe(before);
    expect(await engine.listNetworks({ lab: "default", recipe: "recipe-3" })).toEqual([]);
  });
});
