import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../../src/control/admin-cli.ts";
import { ControlClient } from "../../src/control/client.ts";
import { parseConfig } from "../../src/control/config.ts";
import { formatKey, newKeyPair } from "../../src/control/keys.ts";
import { ControlServer } from "../../src/control/server.ts";
import { eventually } from "../support/eventually.ts";

/**
 * The builtin server with real protocol clients: a policy set through the headscale-style CLI
 * changes every connected node's PacketFilter and peer list on its open map stream; a policy
 * whose tests fail, or that does not parse, is refused and the one in force stays.
 */

const root = mkdtempSync(join(tmpdir(), "wg3-policy-"));
const sock = join(root, "admin.sock");
let ctl: ControlServer;
let url: string;
type MapMsg = Record<string, unknown> & {
  Peers?: { ID: number }[];
  PeersChanged?: { ID: number }[];
  PeersRemoved?: number[];
  PacketFilter?: unknown[];
};
/** What each client knows: its last packet filter and its peers, from full maps and deltas alike. */
const last: Record<string, { PacketFilter?: unknown[]; peers: Set<number> }> = {};
const clients: ControlClient[] = [];

const POLICY = `{
  "groups": { "group:admin": ["alice@"] },
  "tagOwners": { "tag:server": ["group:admin"] },
  "acls": [
    { "action": "accept", "src": ["autogroup:member"], "dst": ["tag:server:80"] },
    { "action": "accept", "src": ["group:admin"], "dst": ["tag:server:22"] }, // trailing comma next
  ],
  "tests": [ { "src": "bob@", "accept": ["tag:server:80"], "deny": ["tag:server:22"] } ],
}`;

const cli = (...args: string[]) => {
  process.env.WG3_CONTROL_SOCKET = sock;
  return runCli(args);
};
const file = (name: string, text: string) => {
  const p = join(root, name);
  writeFileSync(p, text);
  return p;
};

async function join_(name: string, authKey: string): Promise<void> {
  const c = await ControlClient.connect({ url });
  clients.push(c);
  const nodeKey = formatKey("nodekey", newKeyPair().publicKey);
  await c.register({ nodeKey, authKey, hostname: name });
  await c.mapStream({ nodeKey, hostname: name }, (raw) => {
    const m = raw as MapMsg;
    last[name] ??= { peers: new Set() };
    const s = last[name];
    if (m.Peers) s.peers = new Set(m.Peers.map((p) => p.ID));
    for (const p of m.PeersChanged ?? []) s.peers.add(p.ID);
    for (const id of m.PeersRemoved ?? []) s.peers.delete(id);
    if (m.PacketFilter) s.PacketFilter = m.PacketFilter;
  });
}

const peerIds = (name: string) => [...(last[name]?.peers ?? [])].sort();

beforeAll(async () => {
  ctl = new ControlServer(
    parseConfig(
      [
        "server_url: http://127.0.0.1:1",
        "listen_addr: 127.0.0.1:0",
        `state_dir: ${join(root, "state")}`,
        `unix_socket: ${sock}`,
        "dns: { base_domain: tailnet.test }",
        'derp: { server: { enabled: true, stun_listen_addr: "" } }',
      ].join("\n"),
    ),
    () => {},
  );
  url = `http://127.0.0.1:${(await ctl.start()).port}`;
  const alice = ctl.tailnet.createUser("alice");
  const bob = ctl.tailnet.createUser("bob");
  await join_("server", ctl.tailnet.createPreAuthKey(alice.id, { tags: ["tag:server"] }).key);
  await join_("alice", ctl.tailnet.createPreAuthKey(alice.id, {}).key);
  await join_("bob", ctl.tailnet.createPreAuthKey(bob.id, {}).key);
  await eventually("three full maps with every peer", async () => ["server", "alice", "bob"].every((n) => peerIds(n).length === 2));
});
afterAll(async () => {
  for (const c of clients) c.close();
  await ctl?.close();
  delete process.env.WG3_CONTROL_SOCKET;
  rmSync(root, { recursive: true, force: true });
});

describe("an ACL policy on the builtin server", () => {
  it("before a policy: allow-all, every node sees every other (the negative control)", async () => {
    expect(last.bob!.PacketFilter).toEqual([{ SrcIPs: ["*"], DstPorts: [{ IP: "*", Ports: { First: 0, Last: 65535 } }] }]);
    expect(peerIds("bob")).toEqual([1, 2]);
    await expect(cli("policy", "get")).rejects.toThrow(/no policy is set/);
  });

  it("policy set pushes new filters and peer lists to the open map streams", async () => {
    expect(await cli("policy", "set", "-f", file("good.hujson", POLICY))).toBe("Policy updated.\n");
    await eventually("bob's map without alice", async () => peerIds("bob").join() === "1");
    expect(peerIds("alice")).toEqual([1]);
    expect(peerIds("server")).toEqual([2, 3]);
    expect(last.server!.PacketFilter).toHaveLength(2);
    expect(last.bob!.PacketFilter).toEqual([]);
    expect(await cli("policy", "get")).toBe(`${POLICY}\n`);
    expect(JSON.parse(await cli("nodes", "list", "-o", "json")).map((n: { tags: string[] }) => n.tags)).toEqual([["tag:server"], [], []]);
  });

  it.each([
    [
      "failing tests",
      POLICY.replace('"src": ["group:admin"]', '"src": ["autogroup:member"]'),
      /tests failed: bob@ -> tag:server:22: expected DENIED, got ALLOWED/,
    ],
    ["a syntax error", POLICY.replace('"acls": [', '"acls": [[,'), /line 4: HuJSON syntax error/],
    ["an unknown tag", POLICY.replace("tag:server:22", "tag:db:22"), /line 6: tag:db has no entry in tagOwners/],
  ])("refuses a policy with %s, naming the file, and keeps the one in force", async (_what, text, why) => {
    const f = file("bad.hujson", text);
    await expect(cli("policy", "set", "-f", f)).rejects.toThrow(why);
    await expect(cli("policy", "check", "-f", f)).rejects.toThrow(`${f}: `);
    expect(await cli("policy", "get")).toBe(`${POLICY}\n`);
    expect(peerIds("bob")).toEqual([1]);
  });

  it("refuses --advertise-tags with a pre-auth key, as Headscale 0.29", async () => {
    const c = await ControlClient.connect({ url });
    clients.push(c);
    const key = ctl.tailnet.createPreAuthKey("bob", {}).key;
    const nodeKey = formatKey("nodekey", newKeyPair().publicKey);
    const r = await c.register({ nodeKey, authKey: key, hostname: "x", hostinfo: { RequestTags: ["tag:server"] } });
    expect(r.Error).toBe("requested tags [tag:server] are invalid or not permitted");
    expect(ctl.tailnet.nodes()).toHaveLength(3);
  });

  it("--advertise-tags on an interactive login is checked against tagOwners for the approving user", async () => {
    const c = await ControlClient.connect({ url });
    clients.push(c);
    const nodeKey = formatKey("nodekey", newKeyPair().publicKey);
    const first = await c.register({ nodeKey, hostname: "web2", hostinfo: { RequestTags: ["tag:server"] } });
    const authId = String(first.AuthURL).split("/").pop()!;
    await expect(cli("auth", "register", "--user", "bob", "--auth-id", authId)).rejects.toThrow(
      /requested tags \[tag:server\] are invalid or not permitted/,
    );
    expect(ctl.tailnet.nodes()).toHaveLength(3);
    expect(await cli("auth", "register", "--user", "alice", "--auth-id", authId)).toContain("registered");
    expect(ctl.tailnet.nodes().find((n) => n.hostinfo.Hostname === "web2")?.tags).toEqual(["tag:server"]);
  });
});
