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
 * Pre-auth keys through the headscale-style CLI (one-off, reusable, expired, deleted, tagged),
 * and ephemeral nodes on the builtin server: one that goes away (its map stream ends and does not
 * come back) is deleted after node.ephemeral.inactivity_timeout, as Headscale does; one that
 * comes back in time, and every non-ephemeral node, stays.
 */

const root = mkdtempSync(join(tmpdir(), "wg3-ephemeral-"));
const sock = join(root, "admin.sock");
let ctl: ControlServer;
let url: string;

const BASE = ["server_url: http://127.0.0.1:1", "listen_addr: 127.0.0.1:0", "dns: { base_domain: tailnet.test }"];
const cli = (...args: string[]) => {
  process.env.WG3_CONTROL_SOCKET = sock;
  return runCli(args);
};
const nodeNamed = (name: string) => ctl.tailnet.nodes().find((n) => n.hostinfo.Hostname === name);

/** Register `name` with `authKey` and open its map stream; close() ends the stream (the node goes away). */
async function join_(name: string, authKey: string): Promise<{ close(): void; client: ControlClient; nodeKey: string }> {
  const client = await ControlClient.connect({ url });
  const nodeKey = formatKey("nodekey", newKeyPair().publicKey);
  await client.register({ nodeKey, authKey, hostname: name });
  const stream = await client.mapStream({ nodeKey, hostname: name }, () => {});
  await eventually(`${name} online`, () => ctl.tailnet.isOnline(nodeNamed(name)!.id));
  return { close: stream.close, client, nodeKey };
}

describe("config: node.ephemeral.inactivity_timeout", () => {
  it("defaults to Headscale's 30m, and reads the current key and the former one", () => {
    expect(parseConfig(BASE.join("\n")).ephemeralInactivityTimeout).toBe(30 * 60_000);
    expect(parseConfig([...BASE, "node: { ephemeral: { inactivity_timeout: 70s } }"].join("\n")).ephemeralInactivityTimeout).toBe(70_000);
    expect(parseConfig([...BASE, "ephemeral_node_inactivity_timeout: 2m"].join("\n")).ephemeralInactivityTimeout).toBe(120_000);
  });

  it("refuses a value that is no duration, or 0, with the key's name", () => {
    expect(() => parseConfig([...BASE, "node: { ephemeral: { inactivity_timeout: soon } }"].join("\n"))).toThrow(
      /node\.ephemeral\.inactivity_timeout: want a duration/,
    );
    expect(() => parseConfig([...BASE, "ephemeral_node_inactivity_timeout: 0"].join("\n"))).toThrow(ConfigError);
  });
});

describe("ephemeral nodes that go away", () => {
  beforeAll(async () => {
    ctl = new ControlServer(
      parseConfig(
        [
          ...BASE,
          `state_dir: ${join(root, "state")}`,
          `unix_socket: ${sock}`,
          'derp: { server: { enabled: true, stun_listen_addr: "" } }',
          "limits: { offline_grace: 0 }",
          "node: { ephemeral: { inactivity_timeout: 1s } }",
        ].join("\n"),
      ),
      () => {},
    );
    url = `http://127.0.0.1:${(await ctl.start()).port}`;
    ctl.tailnet.createUser("alice");
  });
  afterAll(async () => {
    await ctl?.close();
    delete process.env.WG3_CONTROL_SOCKET;
    rmSync(root, { recursive: true, force: true });
  });

  it("the CLI's --ephemeral key marks the node ephemeral; gone for the timeout, it is deleted, a normal node beside it is not", async () => {
    const created = JSON.parse(await cli("preauthkeys", "create", "-u", "1", "--ephemeral", "-o", "json")) as {
      key: string;
      ephemeral: boolean;
    };
    expect(created.ephemeral).toBe(true);
    const normalKey = JSON.parse(await cli("preauthkeys", "create", "-u", "1", "-o", "json")) as { key: string };
    const guest = await join_("guest", created.key);
    const laptop = await join_("laptop", normalKey.key);
    expect(nodeNamed("guest")!.ephemeral).toBe(true);
    expect(nodeNamed("laptop")!.ephemeral).toBe(false);
    const t0 = performance.now();
    guest.close();
    laptop.close();
    await eventually("the ephemeral node deleted", () => !nodeNamed("guest"), { interval: 100 });
    const gone = performance.now() - t0;
    expect(gone).toBeGreaterThanOrEqual(900); // not before the timeout
    // Negative control: the non-ephemeral node went away at the same moment and is still there, offline.
    expect(nodeNamed("laptop")).toBeDefined();
    expect(ctl.tailnet.isOnline(nodeNamed("laptop")!.id)).toBe(false);
    expect(await cli("nodes", "list")).not.toMatch(/guest/);
    guest.client.close();
    laptop.client.close();
  });

  it("an ephemeral node that comes back within the timeout stays", async () => {
    const key = JSON.parse(await cli("preauthkeys", "create", "-u", "1", "--ephemeral", "--reusable", "-o", "json")) as { key: string };
    const ci = await join_("ci-job", key.key);
    const id = nodeNamed("ci-job")!.id;
    ci.close();
    await eventually("ci-job offline", () => !ctl.tailnet.isOnline(id));
    const back = await ci.client.mapStream({ nodeKey: ci.nodeKey, hostname: "ci-job" }, () => {});
    await eventually("ci-job online again", () => ctl.tailnet.isOnline(id));
    await new Promise((r) => setTimeout(r, 1500)); // past the timeout: nothing may have happened
    expect(nodeNamed("ci-job")?.id).toBe(id);
    back.close();
    await eventually("ci-job deleted once it stays away", () => !nodeNamed("ci-job"), { interval: 100 });
    ci.client.close();
  });
  /** Register a fresh machine with `authKey`: the server's answer (Error set when refused). */
  const register = async (authKey: string, hostname: string) => {
    const client = await ControlClient.connect({ url });
    try {
      return (await client.register({ nodeKey: formatKey("nodekey", newKeyPair().publicKey), authKey, hostname })) as {
        Error?: string;
        MachineAuthorized?: boolean;
      };
    } finally {
      client.close();
    }
  };
  const createKey = async (...flags: string[]) =>
    JSON.parse(await cli("preauthkeys", "create", "-u", "1", ...flags, "-o", "json")) as { id: number; key: string };
  const listed = async (id: number) =>
    (JSON.parse(await cli("preauthkeys", "list", "-o", "json")) as { id: number; used: boolean; acl_tags: string[] }[]).find(
      (k) => k.id === id,
    );

  it("a one-off key registers one machine and is refused for the second; a reusable key registers both", async () => {
    const once = await createKey();
    expect((await register(once.key, "first")).Error ?? "").toBe("");
    expect((await listed(once.id))?.used).toBe(true);
    expect((await register(once.key, "second")).Error).toBe("authkey already used");
    const many = await createKey("--reusable");
    expect((await register(many.key, "first-r")).Error ?? "").toBe("");
    expect((await register(many.key, "second-r")).Error ?? "").toBe("");
    // As Headscale lists it: only a one-off key is spent by its use.
    expect((await listed(many.id))?.used).toBe(false);
  });

  it("each node's record names the key it joined with (pre_auth_key, Headscale's fields in Headscale's order)", async () => {
    const many = await createKey("--reusable", "--tags", "tag:ci");
    await register(many.key, "keyed-1");
    await register(many.key, "keyed-2");
    const line = await cli("nodes", "list", "-o", "json-line");
    // What recipe-5's keys check greps for: one reusable key in two node records.
    const ids = line.match(/"id":\d+,"key":"[^"]*","reusable":true/g) ?? [];
    expect(ids.filter((m) => m.startsWith(`"id":${many.id},`))).toHaveLength(2);
    const nodes = JSON.parse(line) as {
      name: string;
      pre_auth_key?: { id: number; user: { name: string }; acl_tags: string[]; key: string };
    }[];
    const keyed = nodes.find((n) => n.name === "keyed-1")!.pre_auth_key!;
    expect(keyed).toMatchObject({ id: many.id, user: { name: "alice" }, acl_tags: ["tag:ci"] });
    expect(keyed.key).toMatch(/^wg3key-[0-9a-f]+-\*\*\*$/);
    expect(line).not.toContain(many.key);
  });

  it("`preauthkeys expire -i ID` (Headscale 0.29's form) makes the key refused; an -e 1s key expires on its own", async () => {
    const k = await createKey("--reusable");
    expect(await cli("preauthkeys", "expire", "-i", String(k.id))).toMatch(/expired/);
    expect((await register(k.key, "late")).Error).toBe("authkey expired");
    const long = await createKey();
    expect(await cli("preauthkeys", "expire", "--id", String(long.id))).toMatch(/expired/);
    expect((await register(long.key, "late-too")).Error).toBe("authkey expired");
    const short = await createKey("-e", "1s");
    const expiration = (JSON.parse(await cli("preauthkeys", "list", "-o", "json")) as { id: number; expiration: string }[]).find(
      (x) => x.id === short.id,
    )!.expiration;
    await eventually("the 1s key's expiration passed", () => Date.now() > Date.parse(expiration), { interval: 100 });
    expect((await register(short.key, "later")).Error).toMatch(/expired/);
    expect(nodeNamed("later")).toBeUndefined();
  });

  it("`preauthkeys delete -i ID` removes the key: not listed, refused; a key that does not exist is one sentence", async () => {
    const k = await createKey();
    expect(await cli("preauthkeys", "delete", "-i", String(k.id))).toMatch(/deleted/);
    expect(await listed(k.id)).toBeUndefined();
    expect((await register(k.key, "deleted")).Error).toMatch(/invalid/);
    await expect(cli("preauthkeys", "delete", "-i", "999")).rejects.toThrow(/pre-auth key 999 not found/);
    await expect(cli("preauthkeys", "expire")).rejects.toThrow(/usage: headscale preauthkeys expire -i ID/);
  });

  it("a tagged key's node carries the tags, and the list shows them (acl_tags, Tags column)", async () => {
    const k = await createKey("--tags", "tag:ci,tag:guest");
    expect((await listed(k.id))?.acl_tags).toEqual(["tag:ci", "tag:guest"]);
    expect(await cli("preauthkeys", "list")).toMatch(/tag:ci,tag:guest/);
    expect((await register(k.key, "tagged")).Error ?? "").toBe("");
    expect(nodeNamed("tagged")?.tags).toEqual(["tag:ci", "tag:guest"]);
    // `nodes list` has Headscale 0.29's Tags column, after User.
    expect(await cli("nodes", "list")).toMatch(/\| Tags +\| IP addresses/);
    expect(await cli("nodes", "list")).toMatch(/tagged .*\| tag:ci,tag:guest +\|/);
  });
});
