import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../../src/control/admin-cli.ts";
import { ControlClient } from "../../src/control/client.ts";
import { ConfigError, parseConfig } from "../../src/control/config.ts";
import { formatKey, newKeyPair } from "../../src/control/keys.ts";
import { ControlServer } from "../../src/control/server.ts";
import { eventually } from "../support/eventually.ts";

/**
 * Node key expiry on the builtin server, as Headscale 0.29 does it: node.expiry from the config
 * for a person's node (none for a tagged one), `nodes expire`, and what the open map streams
 * are told when a key expires (tailcfg.Node KeyExpiry, Expired, MachineAuthorized): tailscaled
 * goes to NeedsLogin on its own past KeyExpiry, and leaves an Expired peer out of WireGuard.
 */

const root = mkdtempSync(join(tmpdir(), "wg3-expiry-"));
const sock = join(root, "admin.sock");
// Long enough that three joins on a loaded 2-core machine finish well before the first key expires.
const EXPIRY_MS = 10_000;
let ctl: ControlServer;
let url: string;
type TsNode = { ID: number; KeyExpiry?: string; Expired?: boolean; MachineAuthorized: boolean };
type MapMsg = { Node?: TsNode; Peers?: TsNode[]; PeersChanged?: TsNode[] };
/** Per client: its own node and its peers, as the map stream last told it. */
const views: Record<string, { self?: TsNode; peers: Map<number, TsNode> }> = {};
const ids: Record<string, number> = {};
const closers: (() => void)[] = [];

const cli = (...args: string[]) => {
  process.env.WG3_CONTROL_SOCKET = sock;
  return runCli(args);
};

/** A machine registered with a new key of `user` (tagged if `tags`), with its map stream open. */
async function join_(name: string, user: string, tags: string[] = []): Promise<{ client: ControlClient; nodeKey: string }> {
  const client = await ControlClient.connect({ url });
  const nodeKey = formatKey("nodekey", newKeyPair().publicKey);
  await client.register({ nodeKey, authKey: ctl.tailnet.createPreAuthKey(user, { tags }).key, hostname: name });
  const view: (typeof views)[string] = { peers: new Map() };
  views[name] = view;
  const stream = await client.mapStream({ nodeKey, hostname: name }, (raw) => {
    const m = raw as MapMsg;
    if (m.Node) view.self = m.Node;
    if (m.Peers) view.peers.clear();
    for (const p of [...(m.Peers ?? []), ...(m.PeersChanged ?? [])]) view.peers.set(p.ID, p);
  });
  closers.push(stream.close, () => client.close());
  ids[name] = ctl.tailnet.nodes().find((n) => n.hostinfo.Hostname === name)!.id;
  return { client, nodeKey };
}

const config = (expiry: string) =>
  parseConfig(
    [
      "server_url: http://127.0.0.1:1",
      "listen_addr: 127.0.0.1:0",
      `state_dir: ${join(root, "state")}`,
      `unix_socket: ${sock}`,
      "dns: { base_domain: tailnet.test }",
      'derp: { server: { enabled: true, stun_listen_addr: "" } }',
      `node: { expiry: ${expiry} }`,
    ].join("\n"),
  );

beforeAll(async () => {
  ctl = new ControlServer(config(`${EXPIRY_MS / 1000}s`), () => {});
  url = `http://127.0.0.1:${(await ctl.start()).port}`;
  ctl.tailnet.createUser("alice");
  ctl.tailnet.createUser("bob");
});
afterAll(async () => {
  for (const close of closers) close();
  await ctl?.close();
  rmSync(root, { recursive: true, force: true });
});

describe("node key expiry (Headscale's node.expiry and `nodes expire`)", () => {
  it("node.expiry: days and weeks as Headscale writes them, 0 for never; anything else is refused", () => {
    expect(config("7d").nodeExpiry).toBe(7 * 86_400_000);
    expect(config("2w").nodeExpiry).toBe(14 * 86_400_000);
    expect(config('"0"').nodeExpiry).toBe(0);
    expect(() => config("soon")).toThrow(ConfigError);
    expect(() => config("soon")).toThrow(/node\.expiry: want a duration/);
  });

  it("a person's node expires node.expiry after its login; a tagged node never", async () => {
    const before = Date.now();
    await join_("laptop", "alice");
    await join_("server", "alice", ["tag:server"]);
    await join_("phone", "bob");
    await eventually("laptop's own node and its peers", async () => views.laptop!.self && views.laptop!.peers.size === 2);
    const expiry = Date.parse(views.laptop!.self!.KeyExpiry!);
    expect(expiry).toBeGreaterThanOrEqual(before + EXPIRY_MS - 1000);
    expect(expiry).toBeLessThanOrEqual(Date.now() + EXPIRY_MS);
    expect(views.laptop!.self!.Expired).toBeUndefined();
    expect(views.laptop!.self!.MachineAuthorized).toBe(true);
    expect(views.laptop!.peers.get(ids.server!)!.KeyExpiry).toBeUndefined();
    // The admin view says the same.
    const listed = JSON.parse(await cli("nodes", "list", "-o", "json")) as { id: number; expiry?: string; expired: boolean }[];
    expect(listed.find((n) => n.id === ids.server)?.expiry).toBeUndefined();
    expect(listed.find((n) => n.id === ids.laptop)?.expired).toBe(false);
  });

  it("when a key's expiry passes, with nothing else changing, every stream is told: Expired, no longer authorised", async () => {
    // Negative control: before its expiry, the server's view of the laptop is a live peer.
    const ofLaptop = () => views.server!.peers.get(ids.laptop!)!;
    expect(ofLaptop().Expired).toBeUndefined();
    expect(ofLaptop().MachineAuthorized).toBe(true);
    await eventually("the server is told the laptop's key expired", async () => ofLaptop().Expired === true, {
      timeout: EXPIRY_MS + 5_000,
      interval: 100,
    });
    expect(ofLaptop().MachineAuthorized).toBe(false);
    expect(Date.parse(ofLaptop().KeyExpiry!)).toBeLessThanOrEqual(Date.now());
    await eventually("the laptop's own node says so", async () => views.laptop!.self?.Expired === true);
    // The tagged server is no one's expired peer.
    expect(views.laptop!.peers.get(ids.server!)!.Expired).toBeUndefined();
  });

  it("`nodes expire -i ID` expires a key at once; a new login gives the same node a new expiry from node.expiry", async () => {
    const desk = await join_("desk", "bob");
    const ofDesk = () => views.server!.peers.get(ids.desk!);
    await eventually("the server sees desk, unexpired", async () => ofDesk()?.MachineAuthorized === true);
    expect(await cli("nodes", "expire", "--identifier", String(ids.desk))).toMatch(/Node expired/);
    await eventually("the server is told desk expired", async () => ofDesk()?.Expired === true);
    // Logging in again (tailscale up with a new key, same machine key and node key).
    const login = Date.now();
    const res = await desk.client.register({
      nodeKey: desk.nodeKey,
      authKey: ctl.tailnet.createPreAuthKey("bob", {}).key,
      hostname: "desk",
    });
    expect(res.MachineAuthorized).toBe(true);
    expect(
      ctl.tailnet
        .nodes()
        .filter((n) => n.hostinfo.Hostname === "desk")
        .map((n) => n.id),
    ).toEqual([ids.desk]);
    await eventually("the server is told desk is back", async () => ofDesk()?.MachineAuthorized === true && !ofDesk()?.Expired);
    expect(Date.parse(ofDesk()!.KeyExpiry!)).toBeGreaterThanOrEqual(login + EXPIRY_MS - 1000);
  });
});
