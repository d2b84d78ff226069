import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ControlClient } from "../../src/control/client.ts";
import { ConfigError, parseConfig } from "../../src/control/config.ts";
import { DerpClient } from "../../src/control/derp-client.ts";
import { formatKey, newKeyPair, zeroKey } from "../../src/control/keys.ts";
import { ControlServer } from "../../src/control/server.ts";

/**
 * The smaller deviations from Headscale, each as the behaviour we
 * chose (src/control/README.md says which are fixed and which refused), against a live server.
 */

const root = mkdtempSync(join(tmpdir(), "wg3-deviations-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

const CONFIG = (dir: string, more = "") =>
  [
    "server_url: http://127.0.0.1:1",
    "listen_addr: 127.0.0.1:0",
    `state_dir: ${dir}`,
    `unix_socket: ${join(dir, "admin.sock")}`,
    "dns: { base_domain: tailnet.test }",
    `derp: { server: { enabled: true, stun_listen_addr: "" ${more} } }`,
  ].join("\n");

async function server(derpMore = "") {
  const dir = join(root, `s${++n}`);
  const ctl = new ControlServer(parseConfig(CONFIG(dir, derpMore)), () => {});
  const { port } = await ctl.start();
  const user = ctl.tailnet.createUser("hope");
  const key = ctl.tailnet.createPreAuthKey(user.id, { reusable: true }).key;
  return { ctl, url: `http://127.0.0.1:${port}`, port, key };
}

const nodeKey = () => formatKey("nodekey", newKeyPair().publicKey);
const REG = { Version: 138, OldNodeKey: zeroKey("nodekey"), Followup: "", Expiry: "0001-01-01T00:00:00Z" };

describe("the smaller deviations from Headscale", () => {
  it("a future Expiry at registration becomes the node's key expiry; a restart may not extend it", async () => {
    const s = await server();
    const c = await ControlClient.connect({ url: s.url });
    const nk = nodeKey();
    const expiry = new Date(Date.now() + 3_600_000).toISOString();
    const reg = { ...REG, NodeKey: nk, Hostinfo: { Hostname: "exp" } };
    expect((await c.postRaw("/machine/register", { ...reg, Auth: { AuthKey: s.key }, Expiry: expiry })).status).toBe(200);
    expect(s.ctl.tailnet.byNodeKey(nk)?.expiry).toBe(expiry);
    // Negative control: a restart (zero expiry) is fine; one asking for a later expiry is refused.
    expect((await c.postRaw("/machine/register", reg)).status).toBe(200);
    const later = new Date(Date.now() + 7_200_000).toISOString();
    const r = await c.postRaw("/machine/register", { ...reg, Expiry: later });
    expect([r.status, r.body.trim()]).toEqual([400, "extending key is not allowed"]);
    c.close();
    await s.ctl.close();
  });

  it("a lite update without endpoints clears them; a stream request without endpoints keeps them", async () => {
    const s = await server();
    const c = await ControlClient.connect({ url: s.url });
    const nk = nodeKey();
    await c.register({ nodeKey: nk, authKey: s.key, hostname: "ep" });
    const map = (more: object) => c.postRaw("/machine/map", { Version: 138, NodeKey: nk, Compress: "zstd", ...more });
    expect((await map({ OmitPeers: true, Endpoints: ["192.0.2.1:41641"] })).status).toBe(200);
    expect(s.ctl.tailnet.byNodeKey(nk)?.endpoints).toEqual(["192.0.2.1:41641"]);
    const once = await map({ OmitPeers: false }); // one full map, no endpoints given
    expect(once.status).toBe(200);
    expect(s.ctl.tailnet.byNodeKey(nk)?.endpoints).toEqual(["192.0.2.1:41641"]);
    expect((await map({ OmitPeers: true })).status).toBe(200);
    expect(s.ctl.tailnet.byNodeKey(nk)?.endpoints).toEqual([]);
    c.close();
    await s.ctl.close();
  });

  it("the MagicDNS name follows a hostname change, unless an admin renamed the node", async () => {
    const s = await server();
    const c = await ControlClient.connect({ url: s.url });
    const nk = nodeKey();
    await c.register({ nodeKey: nk, authKey: s.key, hostname: "laptop" });
    const lite = (hostname: string) =>
      c.postRaw("/machine/map", { Version: 138, NodeKey: nk, OmitPeers: true, Hostinfo: { Hostname: hostname, OS: "linux" } });
    await lite("Work Laptop");
    const node = s.ctl.tailnet.byNodeKey(nk)!;
    expect(node.givenName).toBe("work-laptop");
    s.ctl.tailnet.rename(node.id, "chosen");
    await lite("desk");
    expect(node.givenName).toBe("chosen");
    c.close();
    await s.ctl.close();
  });

  it("an Ephemeral flag in the register request is ignored: ephemerality comes from the pre-auth key (as Headscale)", async () => {
    const s = await server();
    const c = await ControlClient.connect({ url: s.url });
    const nk = nodeKey();
    await c.postRaw("/machine/register", { ...REG, NodeKey: nk, Auth: { AuthKey: s.key }, Ephemeral: true, Hostinfo: { Hostname: "e" } });
    expect(s.ctl.tailnet.byNodeKey(nk)?.ephemeral).toBe(false);
    c.close();
    await s.ctl.close();
  });

  it("derp.server.enabled: false is refused at start (no DERP map to offer), not silently advertised", () => {
    expect(() => parseConfig(CONFIG(join(root, "x")).replace("enabled: true", "enabled: false"))).toThrow(ConfigError);
    expect(() => parseConfig(CONFIG(join(root, "x")).replace("enabled: true", "enabled: false"))).toThrow(/DERP map/);
  });

  it("ts2021 over WebSocket is answered 501, saying so", async () => {
    const s = await server();
    const reply = await new Promise<string>((resolve) => {
      const sock = net.connect(s.port, "127.0.0.1", () =>
        sock.write(
          "GET /ts2021 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x\r\n\r\n",
        ),
      );
      let got = "";
      sock.on("data", (d) => {
        got += d;
      });
      sock.on("close", () => resolve(got));
    });
    expect(reply).toMatch(/^HTTP\/1\.1 501 .*WebSocket is not implemented/s);
    await s.ctl.close();
  });

  it("a POST /ts2021 without its upgrade headers (a proxy dropped them) is answered 426 naming them; with them it upgrades", async () => {
    const s = await server();
    const plain = await fetch(`${s.url}/ts2021`, { method: "POST" });
    expect(plain.status).toBe(426);
    expect(((await plain.json()) as { error: string }).error).toBe(
      "ts2021 needs Upgrade: tailscale-control-protocol and Connection: upgrade; a proxy in between may drop them",
    );
    const c = await ControlClient.connect({ url: s.url });
    c.close();
    await s.ctl.close();
  });

  it("DERP verify_clients (default on): only this tailnet's node keys may use the relay", async () => {
    const s = await server();
    const url = `${s.url}/derp`;
    const stranger = DerpClient.connect({ url, timeoutMs: 3_000 });
    await expect(stranger).rejects.toThrow();
    const node = newKeyPair();
    const c = await ControlClient.connect({ url: s.url });
    await c.register({ nodeKey: formatKey("nodekey", node.publicKey), authKey: s.key, hostname: "relayed" });
    const member = await DerpClient.connect({ url, privateKey: node.privateKey });
    expect(member.publicKey.equals(Buffer.from(node.publicKey))).toBe(true);
    member.close();
    c.close();
    await s.ctl.close();
    // Negative control: with verify_clients: false the stranger gets in.
    const open = await server(", verify_clients: false");
    const anyone = await DerpClient.connect({ url: `${open.url}/derp`, timeoutMs: 3_000 });
    anyone.close();
    await open.ctl.close();
  });
});
