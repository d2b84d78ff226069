import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine/engine.ts";
import { runningPlan } from "../../src/lab/lifecycle.ts";
import type { LabPlan } from "../../src/lab/plan.ts";
import { testLabName } from "../support/labs.ts";
import { startTs } from "../support/start-ts.ts";
import { ALL, engine, NOTHING, ours, report } from "./lib.ts";

const LABS = { a: testLabName("side-a"), b: testLabName("side-b") };

/**
 * Two copies of recipe-3 side by side (two --lab copies), through the real CLI: both pass all
 * checks, and neither reaches the other's networks. Every "cannot reach" has its "can reach"
 * twin in the own lab first, so a broken probe cannot pass for isolation.
 */
describe.runIf(ALL)("two recipe-3 labs side by side (two --lab copies)", () => {
  let e: Engine;
  const plans: Record<string, LabPlan> = {};
  const sh = (plan: LabPlan, node: string, script: string) => e.sh(plan.nodes[node]!.container, script, { timeoutMs: 20_000 });
  const ok = async (plan: LabPlan, node: string, script: string) => (await sh(plan, node, script)).exitCode === 0;

  beforeAll(async () => {
    e = await engine();
    for (const [key, lab] of Object.entries(LABS)) {
      expect(await ours(e, { lab, recipe: "recipe-3" }), `lab ${lab} must not be running`).toEqual(NOTHING);
      const t0 = performance.now();
      const up = await startTs(["recipe-3", "--lab", lab, "--no-attach"]);
      expect(up.code, up.stderr).toBe(0);
      report(`recipe-3 --lab ${lab} up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      plans[key] = await runningPlan(e, "recipe-3", lab);
    }
  });
  afterAll(async () => {
    for (const lab of Object.values(LABS)) await startTs(["stop", "recipe-3", "--lab", lab]);
    for (const lab of Object.values(LABS)) expect(await ours(e, { lab, recipe: "recipe-3" })).toEqual(NOTHING);
  });

  it("they use different container names and subnets", () => {
    const [a, b] = [plans.a!, plans.b!];
    expect(a.nodes.headscale!.container).toBe(`${LABS.a}-recipe-3_headscale`);
    expect(b.nodes.headscale!.container).toBe(`${LABS.b}-recipe-3_headscale`);
    for (const net of ["home", "roaming"]) expect(a.networks[net]!.subnet).not.toBe(b.networks[net]!.subnet);
  });

  it("both pass every check (after solve)", async () => {
    for (const lab of Object.values(LABS)) {
      const solve = await startTs(["solve", "recipe-3", "--lab", lab]);
      expect(solve.code, solve.stderr).toBe(0);
      const check = await startTs(["check", "recipe-3", "--lab", lab]);
      expect(check.code, check.stdout).toBe(0);
      expect(check.stdout).toMatch(/All 5 exercises pass\./);
    }
  });

  it.each([
    ["a", "b"],
    ["b", "a"],
  ])("from lab %s, nothing of lab %s is reachable (own lab first, as the control)", async (self, other) => {
    const [me, them] = [plans[self]!, plans[other]!];
    const hsMe = me.nodes.headscale!.ip.roaming!;
    const hsThem = them.nodes.headscale!.ip.roaming!;
    const webMe = me.nodes.webserver!.ip.home!;
    const webThem = them.nodes.webserver!.ip.home!;
    // The roaming client: ICMP and the control server's HTTPS.
    expect(await ok(me, "ts-client-roaming", `ping -c1 -W2 ${hsMe}`)).toBe(true);
    expect(await ok(me, "ts-client-roaming", `ping -c1 -W2 ${hsThem}`)).toBe(false);
    expect(await ok(me, "ts-client-roaming", `curl -sk --max-time 3 -o /dev/null https://${hsMe}/health`)).toBe(true);
    expect(await ok(me, "ts-client-roaming", `curl -sk --max-time 3 -o /dev/null https://${hsThem}/health`)).toBe(false);
    // Over the mesh to the own home webserver, not to the other lab's.
    expect(await ok(me, "ts-client-roaming", `curl -s --max-time 3 http://${webMe}/ | grep -q 'Hello from Caddy!'`)).toBe(true);
    expect(await ok(me, "ts-client-roaming", `curl -s --max-time 3 http://${webThem}/ | grep -q 'Hello from Caddy!'`)).toBe(false);
    // From the home LAN out through the home router: the own control server, not the other one.
    expect(await ok(me, "ts-client-home", `curl -sk --max-time 3 -o /dev/null https://${hsMe}/health`)).toBe(true);
    expect(await ok(me, "ts-client-home", `curl -sk --max-time 3 -o /dev/null https://${hsThem}/health`)).toBe(false);
    expect(await ok(me, "home-router", `ping -c1 -W2 ${hsThem}`)).toBe(false);
    // Each Headscale knows only its own two nodes.
    const nodes = JSON.parse((await sh(me, "headscale", "headscale nodes list -o json")).stdout) as { given_name: string }[];
    expect(nodes.map((n) => n.given_name).sort()).toEqual(["home", "roaming"]);
  });
});
