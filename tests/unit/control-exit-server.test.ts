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
 * The builtin server with protocol clients on open map streams: what each one is told of an
 * exit node's and two routers' AllowedIPs as approvals, the policy and the routers' liveness
 * change (full maps and deltas alike), through the headscale-style CLI.
 */

const root = mkdtempSync(join(tmpdir(), "wg3-exit-"));
const sock = join(root, "admin.sock");
const LAN = "192.168.55.0/24";
const EXIT = ["0.0.0.0/0", "::/0"];
let ctl: ControlServer;
let url: string;
type Peer = { ID: number; AllowedIPs: string[] };
type MapMsg = { Peers?: Peer[]; PeersChanged?: Peer[]; PeersRemoved?: number[] };
/** Per client: each peer's routes (AllowedIPs without its own addresses), from full maps and deltas. */
const seen: Record<string, Map<number, string[]>> = {};
const streams: Record<string, { client: ControlClient; close(): void; reopen(): Promise<void> }> = {};
const ids: Record<string, number> = {};

const cli = (...args: string[]) => {
  process.env.WG3_CONTROL_SOCKET = sock;
  return runCli(args);
};
const policy = (internet: boolean) => {
  const p = join(root, `p${internet}.hujson`);
  writeFileSync(
    p,
    `{
  "groups": { "group:admin": ["alice@"] },
  "tagOwners": { "tag:exit": ["group:admin"], "tag:router": ["group:admin"] },
  "hosts": { "home-lan": "${LAN}" },
  "acls": [
    { "action": "accept", "src": ["autogroup:member"], "dst": ["home-lan:80"] },
    ${internet ? `{ "action": "accept", "src": ["group:admin"], "dst": ["autogroup:internet:*"] },` : ""}
  ],
}`,
  );
  return p;
};
const routesOf = (peer: Peer) => peer.AllowedIPs.filter((p) => !/^100\.64\.|^fd7a:/.test(p));

async function join_(name: string, user: string, routes: string[], tags: string[] = []): Promise<void> {
  const client = await ControlClient.connect({ url });
  const nodeKey = formatKey("nodekey", newKeyPair().publicKey);
  await client.register({ nodeKey, authKey: ctl.tailnet.createPreAuthKey(user, { tags }).key, hostname: name, routes });
  const view = new Map<number, string[]>();
  seen[name] = view;
  const open = () =>
    client.mapStream({ nodeKey, hostname: name, hostinfo: { RoutableIPs: routes } }, (raw) => {
      const m = raw as MapMsg;
      if (m.Peers) view.clear();
      for (const p of [...(m.Peers ?? []), ...(m.PeersChanged ?? [])]) view.set(p.ID, routesOf(p));
      for (const id of m.PeersRemoved ?? []) view.delete(id);
    });
  const stream = {
    client,
    close: (await open()).close,
    reopen: async () => {
      stream.close = (await open()).close;
    },
  };
  streams[name] = stream;
  ids[name] = ctl.tailnet.nodes().find((n) => n.hostinfo.Hostname === name)!.id;
}

/** What `viewer` is told of `peer`: undefined when no peer, else its routes. */
const told = (viewer: string, peer: string) => seen[viewer]!.get(ids[peer]!);
const until = (what: string, f: () => boolean) => eventually(what, async () => f());

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
        "limits: { offline_grace: 1s }",
      ].join("\n"),
    ),
    () => {},
  );
  url = `http://127.0.0.1:${(await ctl.start()).port}`;
  ctl.tailnet.createUser("alice");
  ctl.tailnet.createUser("bob");
  await join_("alice", "alice", []);
  await join_("bob", "bob", []);
  await join_("exit", "alice", EXIT, ["tag:exit"]);
  await join_("router1", "alice", [LAN], ["tag:router"]);
  await join_("router2", "alice", [LAN], ["tag:router"]);
  await until("every client sees the four others", () => Object.values(seen).every((v) => v.size === 4));
});
afterAll(async () => {
  for (const s of Object.values(streams)) s.client.close();
  await ctl?.close();
  delete process.env.WG3_CONTROL_SOCKET;
  rmSync(root, { recursive: true, force: true });
});

describe("exit routes and HA routes on open map streams", () => {
  it("advertised but unapproved: no routes in anyone's map (negative control); list-routes shows them available", async () => {
    expect(told("alice", "exit")).toEqual([]);
    expect(told("alice", "router1")).toEqual([]);
    const exit = JSON.parse(await cli("nodes", "list-routes", "-o", "json")).find((n: { given_name: string }) => n.given_name === "exit");
    expect(exit).toMatchObject({ approved_routes: [], available_routes: EXIT, subnet_routes: [] });
  });

  it("approved: without a policy every peer gets the exit routes and the primary's LAN route", async () => {
    await cli("nodes", "approve-routes", "-i", String(ids.exit), "-r", EXIT.join(","));
    await cli("nodes", "approve-routes", "-i", String(ids.router1), "-r", LAN);
    await cli("nodes", "approve-routes", "-i", String(ids.router2), "-r", LAN);
    await until("bob offered the exit routes", () => told("bob", "exit")?.join() === EXIT.join());
    await until("alice given the LAN through router1", () => told("alice", "router1")?.join() === LAN);
    expect(told("alice", "router2")).toEqual([]);
  });

  it("under a policy without autogroup:internet nobody is offered the exit; with it, only admins", async () => {
    await cli("policy", "set", "-f", policy(false));
    await until("the exit node gone from alice's map", () => told("alice", "exit") === undefined);
    expect(told("alice", "router1")).toEqual([LAN]);
    await cli("policy", "set", "-f", policy(true));
    await until("alice offered the exit routes", () => told("alice", "exit")?.join() === EXIT.join());
    expect(told("bob", "exit")).toBeUndefined();
  });

  it("router1 restarts its map stream within offline_grace: it stays online and primary (no failover)", async () => {
    streams.router1!.close();
    await streams.router1!.reopen();
    await until("router1's new stream", () => ctl.mapStreams === 5);
    await new Promise((r) => setTimeout(r, 1500)); // past the grace: nothing may have happened
    expect(ctl.tailnet.isOnline(ids.router1!)).toBe(true);
    expect(told("alice", "router1")).toEqual([LAN]);
    expect(told("alice", "router2")).toEqual([]);
  });

  it("router1's stream ends for good: after offline_grace router2 becomes primary in every viewer's map; router1 back: router2 keeps it", async () => {
    streams.router1!.close();
    await until("router1's stream gone", () => ctl.mapStreams === 4);
    expect(ctl.tailnet.isOnline(ids.router1!)).toBe(true); // within the grace
    await until("alice given the LAN through router2", () => told("alice", "router2")?.join() === LAN);
    expect(told("alice", "router1") ?? []).toEqual([]);
    expect(told("bob", "router2")).toEqual([LAN]);
    await streams.router1!.reopen();
    await until("router1 online again", () => ctl.tailnet.isOnline(ids.router1!));
    expect(told("alice", "router2")).toEqual([LAN]);
    expect(told("alice", "router1")).toEqual([]);
  });
});
