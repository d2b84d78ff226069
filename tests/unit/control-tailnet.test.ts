import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { parseArgs, parseDuration } from "../../src/control/admin-cli.ts";
import { ConfigError, parseConfig } from "../../src/control/config.ts";
import { formatKey, newKeyPair } from "../../src/control/keys.ts";
import { fullMapResponse, nodeView } from "../../src/control/mapper.ts";
import { NoiseConn } from "../../src/control/noise.ts";
import { StateStore } from "../../src/control/store.ts";
import { dnsLabel, isPrefix, nthAddresses, Tailnet, TailnetError } from "../../src/control/tailnet.ts";

const dirs: string[] = [];
const nets: Tailnet[] = [];
afterEach(async () => {
  for (const t of nets.splice(0)) await t.flush(); // the pending group-commit write, before its folder goes
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tailnet(now = () => new Date()) {
  const dir = mkdtempSync(join(tmpdir(), "wg3-tailnet-"));
  dirs.push(dir);
  const t = new Tailnet(new StateStore(dir), {
    v4Prefix: "100.64.0.0/10",
    v6Prefix: "fd7a:115c:a1e0::/48",
    baseDomain: "example.com",
    now,
  });
  nets.push(t);
  return { t, dir };
}
const mk = () => formatKey("mkey", newKeyPair().publicKey);
const nk = () => formatKey("nodekey", newKeyPair().publicKey);
const mapper = {
  baseDomain: "example.com",
  domain: "example.com",
  nameservers: [],
  derp: { regionId: 999, regionCode: "wg3", regionName: "x", hostName: "10.1.99.11", ipv4: "10.1.99.11", port: 443, stunPort: 3478 },
};

describe("tailnet model", () => {
  it("allocates addresses sequentially and reuses the lowest free one", () => {
    expect(nthAddresses("100.64.0.0/10", "fd7a:115c:a1e0::/48", 1)).toEqual({ ipv4: "100.64.0.1", ipv6: "fd7a:115c:a1e0::1" });
    expect(nthAddresses("100.64.0.0/10", "fd7a:115c:a1e0::/48", 300).ipv4).toBe("100.64.1.44");
    const { t } = tailnet();
    t.createUser("hope");
    const { key } = t.createPreAuthKey(1, { reusable: true });
    const a = t.registerWithKey({ machineKey: mk(), nodeKey: nk(), authKey: key, hostinfo: { Hostname: "home" }, cap: 138 });
    const b = t.registerWithKey({ machineKey: mk(), nodeKey: nk(), authKey: key, hostinfo: { Hostname: "Home" }, cap: 138 });
    expect([a.ipv4, b.ipv4]).toEqual(["100.64.0.1", "100.64.0.2"]);
    expect([a.givenName, b.givenName]).toEqual(["home", "home-1"]);
    t.delete(a.id);
    const c = t.registerWithKey({ machineKey: mk(), nodeKey: nk(), authKey: key, hostinfo: { Hostname: "c" }, cap: 138 });
    expect(c.ipv4).toBe("100.64.0.1");
    expect(c.id).toBe(3);
  });

  it("sanitises names into DNS labels", () => {
    expect(dnsLabel("My Laptop_2")).toBe("my-laptop-2");
    expect(dnsLabel("---")).toBe("node");
    expect(dnsLabel("x".repeat(80))).toHaveLength(63);
  });

  it("single-use keys work once; expired keys never; the errors say which", () => {
    let now = new Date("2026-01-01T00:00:00Z");
    const { t } = tailnet(() => now);
    t.createUser("hope");
    const single = t.createPreAuthKey("hope", {}).key;
    const short = t.createPreAuthKey("hope", { expiresInMs: 60_000 }).key;
    t.registerWithKey({ machineKey: mk(), nodeKey: nk(), authKey: single, hostinfo: {}, cap: 138 });
    expect(() => t.registerWithKey({ machineKey: mk(), nodeKey: nk(), authKey: single, hostinfo: {}, cap: 138 })).toThrow(
      "authkey already used",
    );
    now = new Date("2026-01-01T00:02:00Z");
    expect(() => t.registerWithKey({ machineKey: mk(), nodeKey: nk(), authKey: short, hostinfo: {}, cap: 138 })).toThrow("authkey expired");
    expect(() => t.registerWithKey({ machineKey: mk(), nodeKey: nk(), authKey: "nope", hostinfo: {}, cap: 138 })).toThrow(
      "invalid pre auth key",
    );
    expect(() => t.findUser(7)).toThrow(TailnetError);
    expect(() => t.createUser("hope")).toThrow(/already exists/);
    expect(() => t.createUser("bad name")).toThrow(/invalid user name/);
  });

  it("serves an approved, announced route from one online primary and publishes it in AllowedIPs", () => {
    const { t } = tailnet();
    t.createUser("hope");
    const { key } = t.createPreAuthKey(1, { reusable: true });
    const routes = { Hostname: "r", RoutableIPs: ["192.168.99.0/24", "0.0.0.0/0"] };
    const r1 = t.registerWithKey({ machineKey: mk(), nodeKey: nk(), authKey: key, hostinfo: routes, cap: 138 });
    const r2 = t.registerWithKey({ machineKey: mk(), nodeKey: nk(), authKey: key, hostinfo: { ...routes, Hostname: "r2" }, cap: 138 });
    const changes: number[][] = [];
    t.onChange((c) => changes.push([...c]));
    // Negative control: announced but not approved, or approved but offline: nothing served.
    t.setOnline(r1.id, true);
    expect(t.primaryRoutes(r1)).toEqual([]);
    t.approveRoutes(r1.id, ["192.168.99.0/24"]);
    t.approveRoutes(r2.id, ["192.168.99.0/24"]);
    expect(t.primaryRoutes(r1)).toEqual(["192.168.99.0/24"]);
    expect(t.primaryRoutes(r2)).toEqual([]);
    expect(nodeView(t, mapper, r1).AllowedIPs).toEqual(["100.64.0.1/32", "fd7a:115c:a1e0::1/128", "192.168.99.0/24"]);
    expect(nodeView(t, mapper, r2).AllowedIPs).toEqual(["100.64.0.2/32", "fd7a:115c:a1e0::2/128"]);
    // Failover: r1 goes offline, r2 (online) takes over, and both nodes are re-sent.
    t.setOnline(r2.id, true);
    t.setOnline(r1.id, false);
    expect(t.primaryRoutes(r2)).toEqual(["192.168.99.0/24"]);
    expect(changes.at(-1)?.sort()).toEqual([r1.id, r2.id]);
    expect(() => t.approveRoutes(r1.id, ["192.168.99.0"])).toThrow(/invalid route/);
    expect(isPrefix("fd7a::/48")).toBe(true);
  });

  it("the first map message has Node, peers with names, an allow-all filter, a DERP region and MagicDNS", () => {
    const { t } = tailnet();
    t.createUser("hope");
    const { key } = t.createPreAuthKey(1, { reusable: true });
    const a = t.registerWithKey({
      machineKey: mk(),
      nodeKey: nk(),
      authKey: key,
      hostinfo: { Hostname: "home", NetInfo: { PreferredDERP: 999 } },
      cap: 102,
    });
    t.registerWithKey({ machineKey: mk(), nodeKey: nk(), authKey: key, hostinfo: { Hostname: "roaming" }, cap: 138 });
    type Obj = Record<string, unknown> & { Name: string };
    const m = fullMapResponse(t, mapper, a) as {
      Node: Obj;
      Peers: Obj[];
      PacketFilter: { SrcIPs: string[] }[];
      DERPMap: { Regions: Record<string, unknown> };
      DNSConfig: unknown;
      UserProfiles: unknown;
      CollectServices: unknown;
    };
    expect(m.Node.Name).toBe("home.example.com.");
    expect(m.Node.MachineAuthorized).toBe(true);
    expect(m.Node.HomeDERP).toBe(999);
    expect(m.Node.DERP).toBe("127.3.3.40:999");
    expect(m.Peers.map((p: { Name: string }) => p.Name)).toEqual(["roaming.example.com."]);
    expect(m.PacketFilter[0]?.SrcIPs).toEqual(["*"]);
    expect(Object.keys(m.DERPMap.Regions)).toEqual(["999"]);
    expect(m.DNSConfig).toMatchObject({ Proxied: true, Domains: ["example.com"] });
    expect(m.UserProfiles).toEqual([{ ID: 1, LoginName: "hope", DisplayName: "hope" }]);
    expect(m.CollectServices).toBe(false);
  });

  it("a Hostinfo report without NetInfo keeps the node's home DERP region (peers need it to reach the node)", () => {
    const { t } = tailnet();
    t.createUser("hope");
    const { key } = t.createPreAuthKey(1, { reusable: true });
    const n = t.registerWithKey({
      machineKey: mk(),
      nodeKey: nk(),
      authKey: key,
      hostinfo: { Hostname: "home", NetInfo: { PreferredDERP: 999 } },
      cap: 138,
    });
    expect(nodeView(t, mapper, n).HomeDERP).toBe(999);
    // As tailscaled reports after `tailscale down` and `up` again: Hostinfo without NetInfo.
    t.updateFromMapRequest(n, { hostinfo: { Hostname: "home", RoutableIPs: ["192.168.99.0/24"] } });
    expect(nodeView(t, mapper, n).HomeDERP).toBe(999);
    expect(t.announcedRoutes(n)).toEqual(["192.168.99.0/24"]);
    // A new NetInfo still replaces the old one.
    t.updateFromMapRequest(n, { hostinfo: { Hostname: "home", NetInfo: { PreferredDERP: 900 } } });
    expect(nodeView(t, mapper, n).HomeDERP).toBe(900);
  });

  it("state survives a reload: users, nodes, addresses, names and approvals", async () => {
    const { t, dir } = tailnet();
    t.createUser("hope");
    const { key } = t.createPreAuthKey(1, {});
    const n = t.registerWithKey({
      machineKey: mk(),
      nodeKey: nk(),
      authKey: key,
      hostinfo: { Hostname: "home", RoutableIPs: ["10.0.0.0/24"] },
      cap: 138,
    });
    t.approveRoutes(n.id, ["10.0.0.0/24"]);
    await t.committed();
    const again = new Tailnet(new StateStore(dir), {
      v4Prefix: "100.64.0.0/10",
      v6Prefix: "fd7a:115c:a1e0::/48",
      baseDomain: "example.com",
    });
    expect(again.nodes().map((x) => [x.id, x.ipv4, x.givenName, x.approvedRoutes, x.machineKey])).toEqual([
      [n.id, n.ipv4, "home", ["10.0.0.0/24"], n.machineKey],
    ]);
    expect(again.users().map((u) => u.name)).toEqual(["hope"]);
  });
});

describe("config and CLI parsing", () => {
  it("reads a Headscale-shaped config and refuses what cannot work, in one sentence", () => {
    const c = parseConfig("server_url: https://10.1.99.11:443\nlisten_addr: 10.1.99.11:443\ndns: { base_domain: example.com }\n");
    expect(c.derp.region).toMatchObject({ regionId: 999, hostName: "10.1.99.11", ipv4: "10.1.99.11", port: 443, stunPort: 3478 });
    expect(() => parseConfig("listen_addr: 1.2.3.4:1\n")).toThrow(ConfigError);
    expect(() => parseConfig("server_url: https://a.example.com\nlisten_addr: x:1\ndns: { base_domain: example.com }\n")).toThrow(
      /must not contain/,
    );
    expect(() => parseConfig("server_url: https://x\nlisten_addr: nope\ndns: { base_domain: e.com }\n")).toThrow(/HOST:PORT/);
    expect(() => parseConfig("server_url: [")).toThrow(/not valid YAML/);
  });
  it("parses headscale's flags and durations", () => {
    expect(parseArgs(["preauthkeys", "create", "-u", "1", "--reusable", "-e", "24h", "-o", "json"])).toEqual({
      words: ["preauthkeys", "create"],
      flags: { user: "1", reusable: true, expiration: "24h", output: "json" },
    });
    expect(parseArgs(["nodes", "approve-routes", "-i", "1", "-r", "192.168.99.0/24"]).flags).toEqual({
      identifier: "1",
      routes: "192.168.99.0/24",
    });
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(() => parseDuration("soon")).toThrow(/invalid duration/);
    expect(() => parseArgs(["nodes", "list", "-o"])).toThrow(/needs a value/);
  });
});

describe("Noise record parser (fuzz)", () => {
  it("random bytes on the wire only ever destroy the stream, for a bounded time", async () => {
    const until = Date.now() + 1000;
    let n = 0;
    while (Date.now() < until) {
      const sock = new PassThrough();
      const conn = new NoiseConn(sock, { txKey: randomBytes(32), rxKey: randomBytes(32) });
      const errors: Error[] = [];
      conn.on("error", (e) => errors.push(e));
      conn.on("data", () => {
        throw new Error("random bytes must never decrypt");
      });
      const junk = randomBytes(1 + Math.floor(Math.random() * 5000));
      if (n % 2) junk[0] = 4; // half of them look like records
      sock.write(junk);
      await new Promise((r) => setImmediate(r));
      n++;
    }
    expect(n).toBeGreaterThan(50);
  });
});
