import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ControlClient } from "../../src/control/client.ts";
import { parseConfig } from "../../src/control/config.ts";
import { formatKey, newKeyPair } from "../../src/control/keys.ts";
import { ControlServer as BuiltinServer } from "../../src/control/server.ts";
import { BuiltinOnHost, type ControlServer } from "../support/control-server.ts";
import { eventually } from "../support/eventually.ts";
import { freePort } from "../support/ports.ts";

/**
 * The ControlServer test driver against the builtin server in this process (plain HTTP on
 * loopback, its admin socket in a temporary directory): every method a recipe test may call
 * does what it says, through the same headscale-compatible CLI the e2e tests drive in the lab.
 */
describe("the ControlServer driver, against the builtin server on this host", () => {
  const dir = mkdtempSync(join(tmpdir(), "wg3-driver-"));
  let server: BuiltinServer;
  let cs: ControlServer;
  let url = "";

  beforeAll(async () => {
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const config = parseConfig(
      [
        `server_url: ${url}`,
        `listen_addr: 127.0.0.1:${port}`,
        `state_dir: ${join(dir, "state")}`,
        `unix_socket: ${join(dir, "admin.sock")}`,
        "dns: { base_domain: tailnet.test }",
      ].join("\n"),
    );
    server = new BuiltinServer(config, () => {});
    await server.start();
    cs = new BuiltinOnHost(join(dir, "admin.sock"));
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a user's pre-auth key registers a node; it is online while it streams its map; its route gets approved", async () => {
    // Negative control: an empty tailnet.
    expect(await cs.nodes()).toEqual([]);
    const user = await cs.createUser("hope");
    const authKey = await cs.createPreAuthKey(user, { reusable: true });
    expect(authKey).not.toBe("");

    const client = await ControlClient.connect({ url });
    try {
      const nodeKey = formatKey("nodekey", newKeyPair().publicKey);
      const reg = await client.register({ nodeKey, authKey, hostname: "home", routes: ["192.168.99.0/24"] });
      expect(reg.MachineAuthorized).toBe(true);
      const [node, ...more] = await cs.nodes();
      expect(more).toEqual([]);
      expect(node!.given_name).toBe("home");
      expect(node!.ip_addresses.length).toBeGreaterThan(0);
      // Registered, but not streaming its map yet: not online (negative control for onlineNodes).
      expect(await cs.onlineNodes()).toEqual([]);

      const map = await client.mapStream({ nodeKey, hostname: "home" }, () => {});
      try {
        expect(map.status).toBe(200);
        const online = await eventually("home online", async () => {
          const nodes = await cs.onlineNodes();
          return nodes.length === 1 ? nodes : undefined;
        });
        expect(online.map((n) => n.given_name)).toEqual(["home"]);

        // Negative control: nothing approved before approveRoutes.
        expect(node!.approved_routes ?? []).toEqual([]);
        await cs.approveRoutes(node!.id, ["192.168.99.0/24"]);
        expect((await cs.nodes())[0]!.approved_routes).toEqual(["192.168.99.0/24"]);
      } finally {
        map.close();
      }
    } finally {
      client.close();
    }
  });
});
