import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine/engine.ts";
import { UserError } from "../../src/errors.ts";
import { inContainers, requireQdiscs } from "../../src/lab/impairments.ts";
import { liveOptions, parseAssignments, withLabLock } from "../../src/lab/live.ts";
import { labStateDir } from "../../src/lab/plan.ts";
import { parsePong } from "../../src/nodes/tailscale.ts";
import { loadRecipe } from "../../src/recipe/load.ts";

const r4 = () => loadRecipe("recipe-4");

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof UserError) return e.message;
    throw e;
  }
  throw new Error("expected a UserError");
}

describe("live options (recipe-4's NAT types)", () => {
  it("the NAT types and impairments are live, control is chosen at start only", () => {
    expect(liveOptions(r4())).toEqual(
      expect.arrayContaining(["nat-a", "nat-b", "loss-a", "loss-b", "rate-a", "rate-b", "latency-a", "latency-b", "coordinator"]),
    );
    expect(liveOptions(r4())).not.toContain("control");
    expect(liveOptions(loadRecipe("recipe-3"))).toEqual([]);
  });

  it("accepts OPTION=VALUE pairs and refuses anything else in one sentence naming the valid ones", () => {
    expect(parseAssignments(r4(), ["nat-b=hard", "nat-a=none"])).toEqual({ "nat-b": "hard", "nat-a": "none" });
    expect(message(() => parseAssignments(r4(), ["nat-b=wide"]))).toBe(
      '"wide" is not a choice of nat-b; the choices are: none, easy, easy-open, hard, udp-blocked, forwarded, upnp, cgnat, hairpin.',
    );
    // cgnat and hairpin change site B's uplink: site A's router has no such uplinks.
    expect(message(() => parseAssignments(r4(), ["nat-a=hairpin"]))).toBe(
      '"hairpin" is not a choice of nat-a; the choices are: none, easy, easy-open, hard, udp-blocked, forwarded, upnp.',
    );
    const site = message(() => parseAssignments(r4(), ["nat-c=hard"]));
    expect(site).toMatch(
      /^recipe-4 has no live option "nat-c"; it can change: nat-a \(none, easy, easy-open, hard, udp-blocked, forwarded, upnp\); nat-b \(/,
    );
    expect(message(() => parseAssignments(r4(), ["control=builtin"]))).toMatch(/no live option "control"/);
    expect(message(() => parseAssignments(r4(), ["hard"]))).toMatch(/^"hard" is not OPTION=VALUE/);
    expect(message(() => parseAssignments(r4(), []))).toMatch(/^set needs OPTION=VALUE/);
    expect(message(() => parseAssignments(loadRecipe("recipe-3"), ["control=builtin"]))).toBe(
      "recipe-3 has no option that can change while it runs.",
    );
    // A later bad pair refuses the whole command: nothing is half-applied.
    expect(() => parseAssignments(r4(), ["nat-a=hard", "nat-b=wide"])).toThrow(UserError);
  });

  it("an impairment the host kernel lacks is refused in one sentence before any action runs", async () => {
    // A fake engine: only the qdisc probe is beside the point here (e2e runs the real one).
    const ran: string[] = [];
    const engine = {
      sh: async (_c: string, cmd: string) => {
        ran.push(cmd);
        return { exitCode: cmd.includes(" netem ") ? 2 : 0, stdout: "", stderr: "" };
      },
    } as unknown as Engine;
    const probe = inContainers(engine, (n: string) => `c-${n}`);
    const refused = await requireQdiscs(r4(), probe, { "latency-b": "20ms", "nat-a": "hard" }).catch((e: Error) => e);
    expect(refused).toBeInstanceOf(UserError);
    expect((refused as Error).message).toBe(
      "latency-b=20ms needs the netem queueing discipline, which this host's kernel lacks (CONFIG_NET_SCH_NETEM not set); nothing was changed (./start.ts doctor lists the impairments this host supports).",
    );
    // The probe ran in router-b (the option's apply node), and only the probe ran.
    expect(ran).toEqual([expect.stringMatching(/^tc qdisc add dev lo root handle 9: netem /)]);
    // Control: tbf is there, and a choice without requirements probes nothing.
    ran.length = 0;
    await expect(requireQdiscs(r4(), probe, { "rate-a": "1mbit", "latency-a": "0ms" })).resolves.toBeUndefined();
    expect(ran).toHaveLength(1);
  });

  it("the matrix names real options, choices and nodes", () => {
    const m = r4().matrix;
    expect(m.length).toBeGreaterThanOrEqual(4);
    for (const e of m) expect(Object.keys(e.set).sort()).toEqual(["nat-a", "nat-b"]);
  });
});

describe("one change at a time per lab", () => {
  const lab = `t-unit-lock-${process.pid}`;
  const children: number[] = [];
  afterEach(() => {
    for (const pid of children.splice(0)) process.kill(pid);
  });
  afterAll(() => rmSync(join(labStateDir(lab, "recipe-4"), ".."), { recursive: true, force: true }));

  it("refuses while another live process holds the lock, takes over a dead one's", async () => {
    mkdirSync(labStateDir(lab, "recipe-4"), { recursive: true });
    const other = spawn("sleep", ["30"]);
    children.push(other.pid!);
    const lock = join(labStateDir(lab, "recipe-4"), "change.lock");
    writeFileSync(lock, `${other.pid}\nnat-b=hard\n`);
    await expect(withLabLock(lab, "recipe-4", "nat-a=easy", async () => 1)).rejects.toThrow(
      `recipe-4 is already changing (nat-b=hard, pid ${other.pid}); nothing was changed`,
    );
    // A lock whose process is gone (a change killed midway) does not block the next change.
    writeFileSync(lock, "999999999\nnat-b=hard\n");
    expect(await withLabLock(lab, "recipe-4", "nat-a=easy", async () => 2)).toBe(2);
  });
});

describe("tailscale ping's answer", () => {
  it("direct, relayed, or none", () => {
    expect(parsePong("pong from a (100.64.0.1) via 10.44.0.21:41641 in 1ms\n")).toMatchObject({
      path: "direct",
      via: "10.44.0.21:41641",
      ms: 1,
    });
    expect(parsePong("pong from a (100.64.0.1) via DERP(headscale) in 3ms\n")).toMatchObject({ path: "relayed", via: "DERP(headscale)" });
    expect(
      parsePong("pong from a (100.64.0.1) via DERP(headscale) in 1ms\npong from a (100.64.0.1) via 10.44.0.21:41641 in 0s\n").path,
    ).toBe("direct");
    expect(parsePong("timeout waiting for ping reply\n").path).toBe("none");
  });
});

describe("recipe validation of live options", () => {
  it("a set action must name a live option and one of its choices", () => {
    const root = mkdtempSync(join(tmpdir(), "wg3-live-"));
    mkdirSync(join(root, "bad"));
    writeFileSync(
      join(root, "bad", "recipe.yaml"),
      `name: bad
title: t
networks:
  lan: { subnet: 10.9.9.0/24 }
options:
  nat:
    description: d
    default: easy
    apply: [{ node: a, run: "true" }]
    choices: { easy: {}, hard: {} }
nodes:
  a: { image: wg-peer, container: bad_a, hostname: a, networks: { lan: 10.9.9.2 } }
exercises:
  - id: x
    title: t
    hint: h
    check: [{ node: a, run: "true" }]
    solve: [{ set: { nat: wide } }]
matrix:
  - { set: { nat: medium }, between: [a, z], path: direct, why: w }
`,
    );
    const e = (() => {
      try {
        loadRecipe("bad", root);
      } catch (err) {
        return err as UserError;
      }
      throw new Error("expected a rejection");
    })();
    const all = `${e.message}\n${e.details ?? ""}`;
    expect(all).toMatch(/exercises\.0\.solve\.0\.set\.nat: "wide" is not one of the choices \(easy, hard\)/);
    expect(all).toMatch(/matrix\.0\.set\.nat: "medium" is not one of the choices/);
    expect(all).toMatch(/matrix\.0\.between: no node named "z"/);
  });
});
