import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TailscaleInContainer } from "../../src/nodes/tailscale.ts";
import { recipesDir } from "../../src/paths.ts";
import { eventually } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";
import { TIMEOUT } from "../support/timeouts.ts";

const TAILNET_V4 = /^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\./;

// The same suite against Headscale and against this repo's builtin control server.
const controls = (process.env.WG3_CONTROLS ?? "headscale,builtin").split(",");

describe.each(controls)("recipe-3 with --control %s: the coordinated mesh", (control) => {
  let lab: LabHandle;
  let home: TailscaleInContainer;
  let roaming: TailscaleInContainer;
  let web: string;
  const labName = testLabName(`r3-${control}`);
  const login = () => `https://${lab.ip("headscale", "roaming")}`;
  const homeFlags = () => ["--login-server", login(), "--hostname", "home", `--advertise-routes=${lab.plan.networks.home!.subnet}`];
  const roamingFlags = () => ["--login-server", login(), "--hostname", "roaming", "--accept-routes"];

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-3", { lab: labName, options: { control } });
    home = lab.tailscale("ts-client-home");
    roaming = lab.tailscale("ts-client-roaming");
    web = lab.ip("webserver", "home");
  });
  afterAll(async () => {
    await lab?.stop();
  });

  describe("negative controls: with both clients down, there is no mesh", () => {
    beforeAll(async () => {
      expect((await roaming.down()).exitCode).toBe(0);
      expect((await home.down()).exitCode).toBe(0);
      await eventually("no node online in Headscale", async () => (await lab.controlServer().onlineNodes()).length === 0, {
        timeout: TIMEOUT.converge,
      });
    });

    it("headscale nodes list shows no node online", async () => {
      expect(await lab.controlServer().onlineNodes()).toEqual([]);
      expect((await lab.check("nodes-online")).ok).toBe(false);
    });

    it("roaming can neither curl nor trace into the home LAN", async () => {
      expect((await roaming.curl(`http://${web}/`)).stdout).not.toContain("Hello from Caddy!");
      expect((await roaming.tracepath(web)).some((h) => TAILNET_V4.test(h))).toBe(false);
      expect((await lab.check("curl")).ok).toBe(false);
    });

    it("the clients neither list, ping nor connect to each other by MagicDNS name", async () => {
      expect(await roaming.statusText()).not.toMatch(/\shome\s/);
      expect(await home.statusText()).not.toMatch(/\sroaming\s/);
      expect(await roaming.ping("home")).toBe(false);
      expect(await home.ping("roaming")).toBe(false);
      expect((await roaming.sh("nc -z -w 2 home 8000")).exitCode).not.toBe(0);
      expect((await home.sh("nc -z -w 2 roaming 8000")).exitCode).not.toBe(0);
    });
  });

  describe("with both clients up again", () => {
    beforeAll(async () => {
      expect((await home.up(homeFlags())).exitCode).toBe(0);
      expect((await roaming.up(roamingFlags())).exitCode).toBe(0);
      await eventually("two nodes online", async () => (await lab.controlServer().onlineNodes()).length === 2, {
        timeout: TIMEOUT.converge,
      });
      await eventually("roaming's route to the home LAN", async () => (await roaming.routes()).includes(lab.plan.networks.home!.subnet), {
        timeout: TIMEOUT.converge,
      });
    });

    it("headscale nodes list shows two nodes, both online", async () => {
      const nodes = await lab.controlServer().nodes();
      expect(nodes.map((n) => [n.given_name, Boolean(n.online)]).sort()).toEqual([
        ["home", true],
        ["roaming", true],
      ]);
      expect((await lab.check("nodes-online")).ok).toBe(true);
    });

    it("from roaming, curl http://192.168.99.10 returns the Caddy page", async () => {
      const r = await eventually("the Caddy page over the mesh", async () => {
        const c = await roaming.curl(`http://${web}/`);
        return c.stdout.includes("Hello from Caddy!") ? c : undefined;
      });
      expect(r.stdout).toContain("Hello from Caddy!");
    });

    it("tracepath -n shows the home node's Tailscale address as the hop before the target", async () => {
      const homeIp = await home.ip();
      const hops = await roaming.tracepath(web);
      const target = hops.indexOf(web);
      expect(target).toBeGreaterThan(0);
      expect(hops[target - 1]).toBe(homeIp);
      expect(homeIp).toMatch(TAILNET_V4);
    });

    it("tailscale status on each client lists the other by hostname", async () => {
      expect(await roaming.statusText()).toMatch(/\shome\s/);
      expect(await home.statusText()).toMatch(/\sroaming\s/);
    });

    it("ping and a TCP connection by MagicDNS name work both ways", async () => {
      expect(await eventually("roaming pings home by name", () => roaming.ping("home"))).toBe(true);
      expect(await eventually("home pings roaming by name", () => home.ping("roaming"))).toBe(true);
      for (const [server, client, name] of [
        [home, roaming, "home"],
        [roaming, home, "roaming"],
      ] as const) {
        await server.sh("rm -f /tmp/nc.out; (timeout 10 nc -lp 8000 > /tmp/nc.out 2>/dev/null &)");
        await eventually(`nc listening on ${name}`, async () => (await server.sh("ss -ltn | grep -q ':8000 '")).exitCode === 0);
        expect((await client.sh(`echo over-magicdns | nc -N -w 3 ${name} 8000`)).exitCode).toBe(0);
        await eventually(`bytes arrived on ${name}`, async () => (await server.sh("grep -q over-magicdns /tmp/nc.out")).exitCode === 0);
      }
    });

    it("says whether the path between the clients is direct or relayed", async () => {
      const p = await roaming.tsPing("home");
      expect(p.ok).toBe(true);
      console.info(`recipe-3 (${control}): path roaming -> home is ${p.path.toUpperCase()}: ${p.text.trim().split("\n").pop()}`);
      expect(["direct", "relayed"]).toContain(p.path);
    });

    it("the coordination server never sees the secret; the home LAN side does", async () => {
      const hs = lab.container("headscale");
      await lab.sh("headscale", "rm -f /tmp/hs.pcap; (timeout 10 tcpdump -i any -U -w /tmp/hs.pcap >/tmp/td.log 2>&1 &)");
      await home.sh("rm -f /tmp/lan.pcap; (timeout 10 tcpdump -i eth0 -U -w /tmp/lan.pcap tcp port 80 >/tmp/td.log 2>&1 &)");
      await eventually(
        `captures listening on ${hs} and home`,
        async () =>
          (await lab.succeeds("headscale", "grep -q 'listening on' /tmp/td.log")) &&
          (await home.sh("grep -q 'listening on' /tmp/td.log")).exitCode === 0,
      );
      expect((await roaming.curl(`http://${web}/?key=supersecretkey`)).stdout).toContain("Hello from Caddy!");
      await eventually("the request on the home LAN", async () => (await home.sh("grep -aq supersecretkey /tmp/lan.pcap")).exitCode === 0);
      await eventually(
        "captures finished",
        async () => !(await lab.succeeds("headscale", "pgrep tcpdump")) && (await home.sh("pgrep tcpdump")).exitCode !== 0,
        { timeout: TIMEOUT.capture },
      );
      // The Headscale capture is not empty (it saw control/DERP traffic), yet holds no plaintext.
      expect(await lab.succeeds("headscale", "test -s /tmp/hs.pcap")).toBe(true);
      expect(await lab.succeeds("headscale", "grep -aq supersecretkey /tmp/hs.pcap")).toBe(false);
    });

    it("all exercises check out after the solution", async () => {
      await lab.solve("no-plaintext");
      const results = await lab.checkAll();
      expect(results.filter((r) => !r.ok)).toEqual([]);
    });
  });

  describe("stop wipes Headscale's state but keeps its config", () => {
    it("a fresh start registers both clients again from an empty database", async () => {
      const configBefore = readFileSync(join(recipesDir, "recipe-3", "headscale.yaml"), "utf8");
      const before = await home.ip();
      await lab.stop();
      expect(await lab.engine.listContainers({ lab: labName, recipe: "recipe-3" })).toEqual([]);
      lab = await LabHandle.start("recipe-3", { lab: labName, options: { control } });
      home = lab.tailscale("ts-client-home");
      roaming = lab.tailscale("ts-client-roaming");
      const nodes = await lab.controlServer().nodes();
      expect(nodes.map((n) => n.id).sort()).toEqual([1, 2]);
      expect(nodes.every((n) => n.online)).toBe(true);
      expect(await home.ip()).toBe(before); // sequential allocation from an empty database
      expect(readFileSync(join(recipesDir, "recipe-3", "headscale.yaml"), "utf8")).toBe(configBefore);
    });
  });
});
