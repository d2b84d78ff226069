import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { formatKey, newKeyPair } from "../../src/control/keys.ts";
import { nodeView } from "../../src/control/mapper.ts";
import { filterAllows, insideAny, PolicyError, parsePolicy, THE_INTERNET } from "../../src/control/policy.ts";
import type { NodeRec } from "../../src/control/store.ts";
import { StateStore } from "../../src/control/store.ts";
import { Tailnet } from "../../src/control/tailnet.ts";

/**
 * The builtin server's exit nodes and HA subnet routers, on the recipe-5 tailnet: alice (admin),
 * bob, an exit node (tag:exit) and two routers (tag:router) for one home LAN. Facts from
 * Headscale 0.29 (state.RoutesForPeer, policyutil.ReduceFilterRules, node_store's
 * electPrimaryRoutes) and tailscaled (an exit node forwards only to public addresses).
 */

const LAN = "192.168.55.0/24";
const EXIT = ["0.0.0.0/0", "::/0"];
const mapper = {
  baseDomain: "example.com",
  domain: "example.com",
  nameservers: [],
  derp: { regionId: 999, regionCode: "wg3", regionName: "x", hostName: "10.5.99.11", ipv4: "10.5.99.11", port: 443, stunPort: 3478 },
};

const dirs: string[] = [];
const nets: Tailnet[] = [];
afterEach(async () => {
  for (const t of nets.splice(0)) await t.flush();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const policy = (internet: boolean, lan: boolean) => `{
  "groups": { "group:admin": ["alice@"] },
  "tagOwners": { "tag:exit": ["group:admin"], "tag:router": ["group:admin"] },
  "hosts": { "home-lan": "${LAN}" },
  "acls": [
    { "action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"] },
    ${internet ? `{ "action": "accept", "src": ["group:admin"], "dst": ["autogroup:internet:*"] },` : ""}
    ${lan ? `{ "action": "accept", "src": ["autogroup:member"], "dst": ["home-lan:80"] },` : ""}
  ],
}`;

/** alice 1, bob 2, exit 3, router1 4, router2 5; everyone online, nothing approved yet. */
function lab() {
  const dir = mkdtempSync(join(tmpdir(), "wg3-exit-ha-"));
  dirs.push(dir);
  const t = new Tailnet(new StateStore(dir), { v4Prefix: "100.64.0.0/10", v6Prefix: "fd7a:115c:a1e0::/48", baseDomain: "example.com" });
  nets.push(t);
  t.createUser("alice");
  t.createUser("bob");
  const reg = (user: string, Hostname: string, RoutableIPs: string[] = [], tags: string[] = []) => {
    const { key } = t.createPreAuthKey(user, { tags });
    const n = t.registerWithKey({
      machineKey: formatKey("mkey", newKeyPair().publicKey),
      nodeKey: formatKey("nodekey", newKeyPair().publicKey),
      authKey: key,
      hostinfo: { Hostname, RoutableIPs },
      cap: 138,
    });
    t.setOnline(n.id, true);
    return n;
  };
  const alice = reg("alice", "alice");
  const bob = reg("bob", "bob");
  const exit = reg("alice", "exit", EXIT, ["tag:exit"]);
  const r1 = reg("alice", "router1", [LAN], ["tag:router"]);
  const r2 = reg("alice", "router2", [LAN], ["tag:router"]);
  /** What `viewer` is told of `peer`: undefined when it is no peer, else the routes in its AllowedIPs. */
  const seen = (viewer: NodeRec, peer: NodeRec): string[] | undefined => {
    const c = t.compiled().get(viewer.id)!;
    if (!c.peers.has(peer.id)) return undefined;
    const routes = c.routes ? (c.routes.get(peer.id) ?? []) : undefined;
    return (nodeView(t, mapper, peer, routes).AllowedIPs as string[]).filter((p) => p !== `${peer.ipv4}/32` && p !== `${peer.ipv6}/128`);
  };
  return { t, alice, bob, exit, r1, r2, seen };
}

describe("autogroup:internet is the public internet, as Headscale's TheInternet", () => {
  it.each([
    ["198.51.100.80", true],
    ["8.8.8.8", true],
    ["2001:db8::1", true],
    ["10.5.99.80", false],
    ["192.168.55.10", false],
    ["172.20.0.1", false],
    ["100.64.0.1", false],
    ["169.254.1.1", false],
    ["fd7a:115c:a1e0::1", false],
    ["fe80::1", false],
  ])("%s in the internet: %s", (ip, inside) => {
    expect(insideAny(ip, THE_INTERNET)).toBe(inside);
  });

  it("is accepted only as an ACL destination (as Headscale)", () => {
    const refuse = (acl: string, tests = "") => `{ "groups": { "group:admin": ["alice@"] }, "acls": [ ${acl} ] ${tests} }`;
    expect(() => parsePolicy(refuse(`{ "action": "accept", "src": ["group:admin"], "dst": ["autogroup:internet:*"] }`))).not.toThrow();
    expect(() => parsePolicy(refuse(`{ "action": "accept", "src": ["autogroup:internet"], "dst": ["alice@:*"] }`))).toThrow(
      /autogroup:internet is valid only as a destination/,
    );
    expect(() => parsePolicy(refuse("", `, "tests": [ { "src": "alice@", "accept": ["autogroup:internet:443"] } ]`))).toThrow(
      /autogroup:internet not valid as a test destination/,
    );
  });

  it.each([
    ["a CIDR", `"192.168.55.0/24:80"`, /must be a single host, not a CIDR range/],
    ["a host that is a CIDR", `"home-lan:80"`, /must be a single host, not a CIDR range/],
    ["a port range", `"lanhost:80-81"`, /must be a single port/],
    ["every port", `"lanhost:*"`, /must be a single port/],
  ])("a test destination that is %s is refused, as Headscale 0.29 refuses it", (_what, dst, why) => {
    const policyTesting = (d: string) => `{ "hosts": { "home-lan": "${LAN}", "lanhost": "192.168.55.10" },
      "acls": [ { "action": "accept", "src": ["alice@"], "dst": ["home-lan:80"] } ],
      "tests": [ { "src": "alice@", "accept": [${d}] } ] }`;
    expect(() => parsePolicy(policyTesting(dst))).toThrow(PolicyError);
    expect(() => parsePolicy(policyTesting(dst))).toThrow(why);
    // A single host on a single port is a test destination (the positive control).
    expect(() => parsePolicy(policyTesting(`"lanhost:80"`))).not.toThrow();
  });
});

describe("exit nodes: AllowedIPs carry 0.0.0.0/0 and ::/0 only when approved and allowed", () => {
  it("without a policy: no exit routes before approval (negative control), every peer gets them after", () => {
    const { t, alice, bob, exit, seen } = lab();
    expect(t.availableRoutes(exit)).toEqual(EXIT);
    expect(seen(alice, exit)).toEqual([]);
    t.approveRoutes(exit.id, EXIT);
    expect(seen(alice, exit)).toEqual(EXIT);
    expect(seen(bob, exit)).toEqual(EXIT);
    // Exit routes are no HA prefix: never in PrimaryRoutes.
    expect(nodeView(t, mapper, exit).PrimaryRoutes).toBeUndefined();
  });

  it("under a policy: only a viewer allowed autogroup:internet is offered the exit node", () => {
    const { t, alice, bob, exit, seen } = lab();
    t.approveRoutes(exit.id, EXIT);
    t.setPolicy(policy(false, false));
    // Negative control: no rule gives the internet, so the exit node is nobody's peer.
    expect(seen(alice, exit)).toBeUndefined();
    t.setPolicy(policy(true, false));
    expect(seen(alice, exit)).toEqual(EXIT);
    expect(seen(bob, exit)).toBeUndefined();
    // The exit node's own filter lets alice through to public addresses only (tailscaled
    // filters what it forwards), and never bob.
    const f = t.compiled().get(exit.id)!.filter;
    expect(filterAllows(f, alice.ipv4, "198.51.100.80", 80)).toBe(true);
    expect(filterAllows(f, alice.ipv4, "10.5.99.80", 80)).toBe(false);
    expect(filterAllows(f, bob.ipv4, "198.51.100.80", 80)).toBe(false);
    // Everyone else's filter keeps no internet rule.
    expect(filterAllows(t.compiled().get(bob.id)!.filter, alice.ipv4, "198.51.100.80", 80)).toBe(false);
  });

  it("an approved exit route the node no longer advertises is not offered", () => {
    const { t, alice, exit, seen } = lab();
    t.approveRoutes(exit.id, EXIT);
    t.updateFromMapRequest(exit, { hostinfo: { Hostname: "exit", RoutableIPs: [] } });
    expect(seen(alice, exit)).toEqual([]);
    expect(t.exitRoutes(exit)).toEqual([]);
  });
});

describe("HA subnet routers: one primary per prefix, failover when it goes offline", () => {
  it("the first approved online router is primary; the standby takes over when it goes offline and keeps it when it returns", () => {
    const { t, r1, r2 } = lab();
    const primary = () => [t.primaryRoutes(r1), t.primaryRoutes(r2)];
    expect(primary()).toEqual([[], []]); // announced, not approved: nothing served
    t.approveRoutes(r1.id, [LAN]);
    t.approveRoutes(r2.id, [LAN]);
    expect(primary()).toEqual([[LAN], []]);
    t.setOnline(r1.id, false);
    expect(primary()).toEqual([[], [LAN]]);
    // Back online: no flap, router2 stays primary (as Headscale keeps a healthy primary).
    t.setOnline(r1.id, true);
    expect(primary()).toEqual([[], [LAN]]);
    t.setOnline(r2.id, false);
    expect(primary()).toEqual([[LAN], []]);
    // Both gone: nobody serves; both back: the lowest node ID wins.
    t.setOnline(r1.id, false);
    expect(primary()).toEqual([[], []]);
    t.setOnline(r2.id, true);
    t.setOnline(r1.id, true);
    expect(primary()).toEqual([[], [LAN]]);
  });

  it("an expired router is no candidate", () => {
    const { t, r1, r2 } = lab();
    t.approveRoutes(r1.id, [LAN]);
    t.approveRoutes(r2.id, [LAN]);
    t.expire(r1.id);
    expect(t.primaryRoutes(r2)).toEqual([LAN]);
  });

  it("under a policy the LAN rule reaches the routers' filters, and a viewer gets the route from the primary only", () => {
    const { t, alice, bob, r1, r2, seen } = lab();
    t.approveRoutes(r1.id, [LAN]);
    t.approveRoutes(r2.id, [LAN]);
    t.setPolicy(policy(false, false));
    // Negative control: no rule names the LAN, so neither router is a peer.
    expect(seen(alice, r1)).toBeUndefined();
    t.setPolicy(policy(false, true));
    expect(seen(alice, r1)).toEqual([LAN]);
    expect(seen(alice, r2)).toEqual([]);
    expect(seen(bob, r1)).toEqual([LAN]);
    expect(filterAllows(t.compiled().get(r1.id)!.filter, alice.ipv4, "192.168.55.10", 80)).toBe(true);
    expect(filterAllows(t.compiled().get(r1.id)!.filter, alice.ipv4, "192.168.55.10", 22)).toBe(false);
    expect(filterAllows(t.compiled().get(r2.id)!.filter, alice.ipv4, "192.168.55.10", 80)).toBe(true);
    t.setOnline(r1.id, false);
    expect(seen(alice, r2)).toEqual([LAN]);
    expect(seen(alice, r1)).toEqual([]);
    // No rule has a router as a source: the two routers are not each other's peers (as Headscale).
    expect(seen(r1, r2)).toBeUndefined();
  });
});
