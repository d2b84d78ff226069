import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setOptions } from "../../src/lab/actions.ts";
import { status } from "../../src/lab/lifecycle.ts";
import { withLabLock } from "../../src/lab/live.ts";
import { observePaths } from "../../src/lab/paths.ts";
import type { TailscaleInContainer, TsPong } from "../../src/nodes/tailscale.ts";
import { ROOT } from "../../src/paths.ts";
import { loadRecipe } from "../../src/recipe/load.ts";
import type { MatrixEntry } from "../../src/recipe/types.ts";
import { eventually, waitFor } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";

const DIRECT_WITHIN_MS = 60_000;
const RELAYED_WITHIN_MS = 60_000;
// tailscaled asks the router for a mapping at its next periodic STUN (every 20 to 26 s).
const UPNP_DIRECT_WITHIN_MS = 90_000;

/**
 * Recipe 4's NAT matrix, live switching, upnp and exercises against one control server. One
 * file per server (recipe-4-headscale.test.ts, recipe-4-builtin.test.ts), so the two run side
 * by side; WG3_CONTROLS=headscale (or builtin) runs one of them.
 */
export function recipe4Suite(control: "headscale" | "builtin"): void {
  const controls = (process.env.WG3_CONTROLS ?? "headscale,builtin").split(",");
  const everyPairOnBoth = controls.length < 2 || process.env.WG3_DRILLS === "all";
  // Which NAT a pair gets is the routers' and tailscaled's doing; the control server only hands
  // out endpoints and the DERP map. So when both servers run, each pair runs against one of them,
  // alternating down the table (each server meets direct and relayed paths, hard, forwarded
  // and upnp NATs): six minutes less per run. WG3_DRILLS=all npm run test:e2e, or one
  // server alone runs every pair against it.
  const mine = <T>(rows: T[]): T[] => (everyPairOnBoth ? rows : rows.filter((_, i) => i % controls.length === controls.indexOf(control)));
  const upnpHere = everyPairOnBoth || control === controls[1];
  describe.skipIf(!controls.includes(control))(`recipe-4 with --control ${control}: through the NAT`, () => {
    let lab: LabHandle;
    let a: TailscaleInContainer;
    let b: TailscaleInContainer;
    let aIp: string;
    let bIp: string;
    const labName = testLabName(`r4-${control}`);
    const timings: string[] = [];
    const web = () => lab.ip("webserver", "site-a");
    const client = (node: string) => (node === "ts-a" ? a : b);
    const ipOf = (node: string) => (node === "ts-a" ? aIp : bIp);

    /** Change NAT types the way a person does (the `set` machinery), and wait for nothing. */
    async function setNat(values: Record<string, string>): Promise<void> {
      await setOptions({ engine: lab.engine, recipe: lab.recipe, plan: lab.plan, captured: {} }, values);
    }

    /** Each container's ID and start time: unchanged means no container was recreated or restarted. */
    async function containerStarts(): Promise<string[]> {
      return (await status(lab.engine, "recipe-4", labName))[0]!.nodes.map((n) => `${n.id}@${n.startedAt}`);
    }

    /** The client's own answer: poll one `tailscale ping` over the path in use until it is `want`. */
    async function pathBecomes(from: string, to: string, want: TsPong["path"], withinMs: number): Promise<{ pong: TsPong; ms: number }> {
      const t0 = Date.now();
      const pong = await eventually(
        `${from} -> ${to} ${want}`,
        async () => {
          // With traffic beside it: a tailscaled 45 s without a packet through its tunnel
          // stops re-STUNning, and so never asks for a port mapping (upnp stays relayed).
          const [p] = await Promise.all([client(from).pong(ipOf(to), 2), client(from).ping(ipOf(to))]);
          if (p.path !== want) throw new Error(`${p.path} via ${p.via ?? "nothing"}`);
          return p;
        },
        { timeout: withinMs },
      );
      return { pong, ms: Date.now() - t0 };
    }

    /**
     * A relayed path is only a verdict once the client gave up on a direct one: `tailscale ping`
     * (which keeps trying to go direct, 10 pings) ends with "direct connection not established".
     */
    async function staysRelayed(from: string, to: string): Promise<string> {
      const r = await client(from).sh(`tailscale ping -c 10 --timeout 2s ${ipOf(to)} 2>&1`);
      return r.stdout;
    }

    beforeAll(async () => {
      lab = await LabHandle.start("recipe-4", { lab: labName, options: { control } });
      a = lab.tailscale("ts-a");
      b = lab.tailscale("ts-b");
      aIp = await a.ip();
      bIp = await b.ip();
    });
    afterAll(async () => {
      if (timings.length) console.info(`recipe-4 (${control}) timings:\n  ${timings.join("\n  ")}`);
      await lab?.stop();
    });

    it("the routers are the only NAT: router-b's conntrack shows ts-b's own LAN address", async () => {
      // Any UDP from ts-b to the internet; its entry on router-b must carry ts-b's address, not a
      // host bridge gateway's (lab networks are `internal`: the host does not NAT them).
      await b.sh(`tailscale ping -c 1 --until-direct=false ${aIp} >/dev/null 2>&1`);
      const ct = await lab.sh("router-b", "conntrack -L -p udp 2>/dev/null");
      const tsB = lab.ip("ts-b", "site-b");
      expect(ct.stdout).toContain(`src=${tsB} `);
      expect(ct.stdout).not.toContain(`src=${lab.plan.networks["site-b"]!.gateway} `);
    });

    // The recipe's own table: set each entry live, from a state where its path is the other one
    // (the negative control: the assertion fails first), and time the change.
    const entries = (): MatrixEntry[] => lab.recipe.matrix;
    it("the recipe's matrix has the pairs this test must cover", async () => {
      const m = loadRecipe("recipe-4").matrix.map((e) => `${e.set["nat-a"]}/${e.set["nat-b"]}=${e.path}`);
      expect(m).toEqual(
        expect.arrayContaining([
          "easy/easy=direct",
          "easy/hard=relayed",
          "hard/hard=relayed",
          "udp-blocked/easy=relayed",
          "easy/cgnat=direct",
          "hard/hairpin=direct",
          "upnp/hard=direct",
        ]),
      );
    });

    describe.each(
      // vitest needs the table when it collects; the recipe is data, so read it here too.
      mine(loadRecipe("recipe-4").matrix).map((e) => [`${e.set["nat-a"]}/${e.set["nat-b"]}`, e] as const),
    )("NAT %s", (_name, entry) => {
      it(`${entry.between.join(" -> ")} is ${entry.path} (negative control first), and traffic flows`, async () => {
        expect(entries().length).toBeGreaterThan(0);
        const [from, to] = entry.between;
        const opposite = entry.path === "direct" ? "relayed" : "direct";
        // Negative control: a state whose path is the opposite, where this entry's assertion fails.
        await setNat(entry.path === "direct" ? { "nat-a": "hard", "nat-b": "hard" } : { "nat-a": "easy", "nat-b": "easy" });
        const before = await pathBecomes(from, to, opposite, entry.path === "direct" ? RELAYED_WITHIN_MS : DIRECT_WITHIN_MS);
        expect(before.pong.path).not.toBe(entry.path);
        if (entry.path === "relayed") {
          // The row is about a path formed under these NATs. A direct path that already exists
          // can outlive a switch (who sends first after the conntrack flush decides, seen with
          // easy-open), so drop it first: with no UDP out, both clients fall back to DERP.
          await setNat({ "nat-a": "udp-blocked", "nat-b": "udp-blocked" });
          await pathBecomes(from, to, "relayed", RELAYED_WITHIN_MS);
        }

        await setNat(entry.set);
        const directWithin = Object.values(entry.set).includes("upnp") ? UPNP_DIRECT_WITHIN_MS : DIRECT_WITHIN_MS;
        const after = await pathBecomes(from, to, entry.path, entry.path === "direct" ? directWithin : RELAYED_WITHIN_MS);
        if (entry.path === "direct") {
          expect(after.pong.via).toMatch(/^\d+\.\d+\.\d+\.\d+:\d+$/);
          // tailscale status agrees: CurAddr is that ip:port.
          const peer = await client(from).peer(to === "ts-a" ? "a" : "b");
          expect(peer?.CurAddr).toBe(after.pong.via);
        } else {
          expect(after.pong.via).toMatch(/^DERP\(/);
          const out = await staysRelayed(from, to);
          expect(out).toMatch(/direct connection not established/);
          expect(out).not.toMatch(/via \d+\.\d+\.\d+\.\d+:\d+/);
        }
        const from_ = entry.path === "relayed" ? "DERP, then 10 pings found no direct path" : opposite;
        timings.push(`${_name}: ${entry.path} after ${(after.ms / 1000).toFixed(1)} s (from ${from_})`);
        // Either way traffic flows: b reaches site A's webserver through a's advertised route.
        const page = await waitFor("the webserver through the tailnet", async () => {
          const r = await b.curl(`http://${web()}/`);
          return r.stdout.includes("Hello from Caddy!") ? r : undefined;
        });
        expect(page.stdout).toContain("Hello from Caddy!");
      });
    });

    // With both servers, on the one whose half of the matrix lacks the upnp/hard row.
    describe.runIf(upnpHere)("upnp: the client maps a port itself", () => {
      // On site B: the matrix's upnp/hard row maps a port on router-a. A tailscaled trusts its
      // mapping for the mapping's lifetime (2 h, renewed after 1 h), which is why miniupnpd keeps
      // a lease file: a restart of it must not strand the client on a dead port.
      it("hard/hard is relayed; live `set nat-b=upnp` makes it direct through b's own mapping, no container restarted", async () => {
        const before = await containerStarts();
        const wan = lab.ip("router-b", "internet");
        const tsB = lab.ip("ts-b", "site-b");
        // Negative control: both hard, relayed, and router-b has no miniupnpd nor its table.
        await setNat({ "nat-a": "hard", "nat-b": "hard" });
        await pathBecomes("ts-a", "ts-b", "relayed", RELAYED_WITHIN_MS);
        expect(await staysRelayed("ts-a", "ts-b")).toMatch(/direct connection not established/);
        expect(await lab.succeeds("router-b", "nft list table inet wg3upnp")).toBe(false);
        expect(await lab.succeeds("router-b", "pgrep -x miniupnpd")).toBe(false);

        const t0 = Date.now();
        const set = await execa(join(ROOT, "start.ts"), ["set", "recipe-4", "nat-b=upnp", "--lab", labName], {
          reject: false,
          env: { NO_COLOR: "1" },
        });
        expect(set.exitCode, set.stderr).toBe(0);
        lab.plan.options["nat-b"] = "upnp";
        const direct = await pathBecomes("ts-a", "ts-b", "direct", UPNP_DIRECT_WITHIN_MS);
        const ms = Date.now() - t0;
        timings.push(`live hard/hard -> hard/upnp: direct ${(ms / 1000).toFixed(1)} s after \`set nat-b=upnp\` began`);

        // a reaches b at router-b's public address, on the port b's mapping got...
        const port = new RegExp(`^${wan.replaceAll(".", "\\.")}:(\\d+)$`).exec(direct.pong.via)?.[1];
        expect(port, direct.pong.via).toBeDefined();
        expect((await a.peer("b"))?.CurAddr).toBe(direct.pong.via);
        // ...which miniupnpd's own chain forwards to b's tailscaled port...
        const table = (await lab.sh("router-b", "nft list table inet wg3upnp")).stdout;
        // (nft prints miniupnpd's rule as `iif "eth1" @nh,72,8 0x11 th dport P dnat ip to B:41641`:
        // it matches the IP protocol byte, 0x11 = UDP, and the transport header's port.)
        expect(table).toMatch(new RegExp(`th dport ${port} dnat ip to ${tsB.replaceAll(".", "\\.")}:41641`));
        // ...and that b itself advertised as a port-mapped endpoint (its log: "ip:port (portmap)").
        const log = await lab.engine.logTail(lab.container("ts-b"), 5000);
        expect(log).toContain(`${wan}:${port} (portmap)`);
        expect(await containerStarts()).toEqual(before);

        // Any other type stops miniupnpd and removes its table, mappings and all.
        await setNat({ "nat-b": "hard" });
        expect(await lab.succeeds("router-b", "pgrep -x miniupnpd")).toBe(false);
        expect(await lab.succeeds("router-b", "nft list table inet wg3upnp")).toBe(false);
        await pathBecomes("ts-a", "ts-b", "relayed", RELAYED_WITHIN_MS);

        // Back to upnp: miniupnpd restores b's mapping from its lease file, the port b still
        // advertises leads to b again, and the pair is direct without b asking anew.
        await setNat({ "nat-b": "upnp" });
        expect((await lab.sh("router-b", "nft list table inet wg3upnp")).stdout).toMatch(
          new RegExp(`th dport ${port} dnat ip to ${tsB.replaceAll(".", "\\.")}:41641`),
        );
        const again = await pathBecomes("ts-a", "ts-b", "direct", UPNP_DIRECT_WITHIN_MS);
        expect(again.pong.via).toBe(direct.pong.via);
      });
    });

    describe("what the clients' netcheck says about each NAT", () => {
      // Both servers' DERP maps have two STUN servers (region 999 and the STUN-only region 900,
      // from derp.paths): a hard NAT shows as MappingVariesByDestIP true. With one (the builtin
      // server before it read derp.paths) tailscaled cannot tell, and the field stays unset.
      it("easy -> MappingVariesByDestIP false, hard -> true; udp-blocked -> UDP false", async () => {
        await setNat({ "nat-a": "easy", "nat-b": "hard" });
        const [na, nb] = await Promise.all([a.netcheck(), b.netcheck()]);
        expect(na.UDP).toBe(true);
        expect(na.MappingVariesByDestIP).toBe(false);
        expect(nb.MappingVariesByDestIP).toBe(true);
        await setNat({ "nat-a": "udp-blocked" });
        expect((await a.netcheck()).UDP).toBe(false);
      });
    });

    describe("live switching", () => {
      it("direct -> relayed after `set nat-b=hard`, direct again after the fix, no container restarted", async () => {
        const before = await containerStarts();
        await setNat({ "nat-a": "easy", "nat-b": "easy" });
        await pathBecomes("ts-b", "ts-a", "direct", DIRECT_WITHIN_MS);
        const cli = (args: string[]) => execa(join(ROOT, "start.ts"), args, { reject: false, env: { NO_COLOR: "1" } });
        expect((await cli(["set", "recipe-4", "nat-b=hard", "--lab", labName])).exitCode).toBe(0);
        lab.plan.options["nat-b"] = "hard";
        const relayed = await pathBecomes("ts-b", "ts-a", "relayed", RELAYED_WITHIN_MS);
        timings.push(`live easy/easy -> easy/hard: relayed after ${(relayed.ms / 1000).toFixed(1)} s`);
        expect((await cli(["set", "recipe-4", "nat-b=forwarded", "--lab", labName])).exitCode).toBe(0);
        lab.plan.options["nat-b"] = "forwarded";
        const direct = await pathBecomes("ts-b", "ts-a", "direct", DIRECT_WITHIN_MS);
        timings.push(`live easy/hard -> easy/forwarded: direct after ${(direct.ms / 1000).toFixed(1)} s`);
        const after = await containerStarts();
        expect(after).toEqual(before);
        // paths reads the same from the clients, in both directions, once a's side has upgraded
        // too (each side upgrades on its own disco pings; seen: b->a direct while a->b still relayed).
        await pathBecomes("ts-a", "ts-b", "direct", DIRECT_WITHIN_MS);
        const report = await observePaths(lab.engine, lab.plan, { netcheck: false });
        expect(report.paths.map((p) => [p.from, p.to, p.path])).toEqual([
          ["ts-a", "ts-b", "direct"],
          ["ts-b", "ts-a", "direct"],
        ]);
      });

      it("an unknown NAT type or option changes nothing, in one sentence listing the valid ones", async () => {
        const rules = (await lab.sh("router-b", "nft list table ip wg3nat")).stdout;
        const cli = (args: string[]) => execa(join(ROOT, "start.ts"), args, { reject: false, env: { NO_COLOR: "1" } });
        const bad = await cli(["set", "recipe-4", "nat-b=wide-open", "--lab", labName]);
        expect(bad.exitCode).toBe(2);
        expect(bad.stderr.trim()).toBe(
          '"wide-open" is not a choice of nat-b; the choices are: none, easy, easy-open, hard, udp-blocked, forwarded, upnp, cgnat, hairpin.',
        );
        const site = await cli(["set", "recipe-4", "nat-c=hard", "--lab", labName]);
        expect(site.exitCode).toBe(2);
        expect(site.stderr.trim().split("\n")).toHaveLength(1);
        expect(site.stderr).toMatch(/no live option "nat-c"; it can change: nat-a \(.*\); nat-b \(.*\)\./);
        expect((await lab.sh("router-b", "nft list table ip wg3nat")).stdout).toBe(rules);
      });

      it("a switch while another is applying is refused and changes nothing", async () => {
        const rules = (await lab.sh("router-b", "nft list table ip wg3nat")).stdout;
        await withLabLock(labName, "recipe-4", "nat-b=hard (held by the test)", async () => {
          const r = await execa(join(ROOT, "start.ts"), ["set", "recipe-4", "nat-b=hard", "--lab", labName], { reject: false });
          expect(r.exitCode).toBe(1);
          expect(r.stderr).toMatch(/recipe-4 is already changing \(nat-b=hard \(held by the test\), pid \d+\); nothing was changed/);
        });
        expect((await lab.sh("router-b", "nft list table ip wg3nat")).stdout).toBe(rules);
      });
    });

    describe("exercises: each check fails before its solution and passes after", () => {
      it.each(["hard-relayed", "forward-fix", "udp-blocked", "easy-direct"])("%s", async (id) => {
        // The stage before each exercise is another one, so its check does not hold yet.
        const pre: Record<string, Record<string, string>> = {
          "hard-relayed": { "nat-a": "easy", "nat-b": "easy" },
          "forward-fix": { "nat-a": "easy", "nat-b": "hard" },
          "udp-blocked": { "nat-a": "easy", "nat-b": "easy" },
          "easy-direct": { "nat-a": "hard", "nat-b": "hard" },
        };
        await setNat(pre[id]!);
        expect((await lab.check(id)).ok).toBe(false);
        await lab.solve(id);
        expect((await lab.check(id)).ok).toBe(true);
      });
    });
  });
}
