import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../../src/control/admin-cli.ts";
import { ControlClient } from "../../src/control/client.ts";
import { formatKey, newKeyPair } from "../../src/control/keys.ts";
import { waitFor } from "../support/eventually.ts";
import { cleanup, HostControl, HostTailscaled, tailscaleBins, tempDir } from "./tailscaled-host.ts";

/**
 * The builtin control server with real tailscaled clients on this host (userspace
 * networking, no containers): registration, MagicDNS names, tailscale ping direct and
 * through our DERP relay, restart with state kept, and the refusals a server owes.
 */

const bins = tailscaleBins();
if (!bins) throw new Error("the pinned tailscale binaries are not built: run ./start.ts setup first");

describe("builtin control server with real tailscaled on the host", () => {
  const dir = tempDir("wg3-control-it-");
  const ctl = new HostControl(join(dir, "control"));
  const clients: HostTailscaled[] = [];
  const cli = (...args: string[]) => runCli([...args]);
  let key = "";

  const client = async (name: string, env: Record<string, string> = {}) => {
    const c = new HostTailscaled(name, join(dir, name), bins, { SSL_CERT_FILE: ctl.caFile, ...env });
    clients.push(c);
    await c.start();
    return c;
  };
  const up = (c: HostTailscaled, authKey = key, ...more: string[]) =>
    c.cli(["up", `--login-server=${ctl.url}`, `--auth-key=${authKey}`, `--hostname=${c.name}`, "--timeout=45s", ...more]);
  const alphaStatus = () => clients.find((c) => c.name === "alpha")!.status();
  const peerNames = async (c: HostTailscaled) => Object.values((await c.status()).Peer ?? {}).map((p) => p.DNSName);

  beforeAll(async () => {
    await ctl.start();
    process.env.WG3_CONTROL_SOCKET = ctl.socket;
    expect(await cli("users", "create", "hope")).toBe("User created\n");
    key = (await cli("preauthkeys", "create", "-u", "1", "--reusable")).trim();
  });

  afterAll(async () => {
    for (const c of clients) await c.stop();
    await ctl.stop();
    delete process.env.WG3_CONTROL_SOCKET;
    cleanup(dir);
  });

  it("refuses an invalid pre-auth key: tailscale up fails and says why", async () => {
    const c = await client("mallory");
    const r = await up(c, "wg3key-0123456789abcdef");
    expect(r.exitCode).not.toBe(0);
    expect(r.all).toContain("invalid pre auth key");
    expect(JSON.parse(await cli("nodes", "list", "-o", "json"))).toEqual([]);
    await c.stop();
  });

  it("two clients register, reach Running, and list each other by MagicDNS name", async () => {
    const alpha = await client("alpha");
    // Negative control: alone, alpha has no peer and cannot ping beta.
    expect((await up(alpha)).exitCode).toBe(0);
    expect(await peerNames(alpha)).toEqual([]);
    expect((await alpha.cli(["ping", "--c=1", "--timeout=2s", "beta"], 10_000)).exitCode).not.toBe(0);

    const beta = await client("beta");
    expect((await up(beta)).exitCode).toBe(0);
    for (const [c, peer] of [
      [alpha, "beta.tailnet.test."],
      [beta, "alpha.tailnet.test."],
    ] as const) {
      expect((await c.status()).BackendState).toBe("Running");
      await waitFor(`${c.name} lists ${peer}`, async () => (await peerNames(c)).includes(peer), 30_000);
      expect((await c.cli(["status"])).stdout).toMatch(new RegExp(`\\s${peer.split(".")[0]}\\s`));
    }
    expect((await alpha.status()).Self.DNSName).toBe("alpha.tailnet.test.");
    const nodes = JSON.parse(await cli("nodes", "list", "-o", "json")) as { given_name: string; online: boolean; ip_addresses: string[] }[];
    expect(nodes.map((n) => [n.given_name, n.online])).toEqual([
      ["alpha", true],
      ["beta", true],
    ]);
    expect(nodes.map((n) => n.ip_addresses[0])).toEqual(["100.64.0.1", "100.64.0.2"]);
  });

  it("tailscale ping reaches the peer by name", async () => {
    const [alpha] = clients.filter((c) => c.name === "alpha");
    const r = await waitFor(
      "alpha pings beta",
      async () => {
        const p = await alpha!.cli(["ping", "--c=3", "--timeout=5s", "beta"], 30_000);
        return p.exitCode === 0 && /pong from beta/.test(p.stdout) ? p : undefined;
      },
      45_000,
    );
    expect(r.stdout).toMatch(/pong from beta \(100\.64\.0\.2/);
  });

  it("relays through the embedded DERP server when direct paths are off", async () => {
    const before = ctl.server.derp!.clientCount();
    const env = { TS_DEBUG_ALWAYS_USE_DERP: "true" };
    const gamma = await client("gamma", env);
    const delta = await client("delta", env);
    expect((await up(gamma)).exitCode).toBe(0);
    expect((await up(delta)).exitCode).toBe(0);
    await waitFor("both relayed clients connected to our DERP", async () => ctl.server.derp!.clientCount() >= before + 2, 30_000);
    const r = await waitFor(
      "gamma pings delta via DERP",
      async () => {
        const p = await gamma.cli(["ping", "--c=5", "--timeout=5s", "delta"], 40_000);
        return /pong from delta .* via DERP\(wg3\)/.test(p.stdout) ? p : undefined;
      },
      60_000,
    );
    expect(r.stdout).toMatch(/via DERP\(wg3\)/);
  });

  it("a restarted control server keeps nodes, keys, IPs and names; clients recover", async () => {
    const before = JSON.parse(await cli("nodes", "list", "-o", "json")) as { id: number; given_name: string; ip_addresses: string[] }[];
    await ctl.stop();
    // Negative control: with the server down the admin CLI says so.
    await expect(cli("nodes", "list")).rejects.toThrow(/cannot reach the control server/);
    await ctl.start();
    const [alpha] = clients.filter((c) => c.name === "alpha");
    await waitFor(
      "all four nodes online again",
      async () => (JSON.parse(await cli("nodes", "list", "-o", "json")) as { online: boolean }[]).filter((n) => n.online).length === 4,
      90_000,
    );
    const after = JSON.parse(await cli("nodes", "list", "-o", "json")) as typeof before;
    expect(after.map((n) => [n.id, n.given_name, n.ip_addresses])).toEqual(before.map((n) => [n.id, n.given_name, n.ip_addresses]));
    const p = await waitFor(
      "alpha pings beta after the restart",
      async () => {
        const r = await alpha!.cli(["ping", "--c=3", "--timeout=5s", "beta"], 30_000);
        return r.exitCode === 0 ? r : undefined;
      },
      60_000,
    );
    expect(p.stdout).toContain("pong from beta");
  });

  it("refuses a node key presented under another machine key, and a used single-use key", async () => {
    const single = (await cli("preauthkeys", "create", "-u", "hope")).trim();
    const nodeKey = formatKey("nodekey", newKeyPair().publicKey);
    const a = await ControlClient.connect({ url: ctl.url, ca: (await import("node:fs")).readFileSync(ctl.caFile, "utf8") });
    expect((await a.register({ nodeKey, authKey: single, hostname: "epsilon" })).MachineAuthorized).toBe(true);
    // Negative control first: the rightful machine may poll its map.
    const ok = await a.mapStream({ nodeKey, hostname: "epsilon" }, () => {});
    expect(ok.status).toBe(200);
    ok.close();
    const b = await ControlClient.connect({ url: ctl.url, ca: (await import("node:fs")).readFileSync(ctl.caFile, "utf8") });
    expect((await b.register({ nodeKey, hostname: "thief" })).Error).toMatch(/another machine/);
    expect((await b.mapStream({ nodeKey, hostname: "thief" }, () => {})).status).toBe(403);
    const reuse = await b.register({ nodeKey: formatKey("nodekey", newKeyPair().publicKey), authKey: single, hostname: "zeta" });
    expect(reuse.Error).toBe("authkey already used");
    a.close();
    b.close();
  });

  it("nodes delete removes a node from every peer's netmap (PeersRemoved); nodes expire logs a client out", async () => {
    const [alpha] = clients.filter((c) => c.name === "alpha");
    const [delta] = clients.filter((c) => c.name === "delta");
    const list = async () => JSON.parse(await cli("nodes", "list", "-o", "json")) as { id: number; given_name: string }[];
    const gamma = (await list()).find((n) => n.given_name === "gamma")!;
    // Negative control: alpha lists gamma before the delete.
    expect(await peerNames(alpha!)).toContain("gamma.tailnet.test.");
    expect(await cli("nodes", "delete", "-i", String(gamma.id))).toBe("Node deleted\n");
    await waitFor("alpha no longer lists gamma", async () => !(await peerNames(alpha!)).includes("gamma.tailnet.test."), 20_000);
    expect((await list()).map((n) => n.given_name)).not.toContain("gamma");

    const d = (await list()).find((n) => n.given_name === "delta")!;
    expect((await delta!.status()).BackendState).toBe("Running");
    expect(await cli("nodes", "expire", "-i", String(d.id))).toBe("Node expired\n");
    await waitFor("delta needs to log in again", async () => (await delta!.status()).BackendState === "NeedsLogin", 20_000);
    await expect(cli("nodes", "expire", "-i", "9999")).rejects.toThrow(/node 9999 not found/);
  });

  it("interactive login: tailscale up prints a URL, an admin approves it with auth register, the node joins", async () => {
    const eta = await client("eta");
    const up = eta.cli(["up", `--login-server=${ctl.url}`, "--hostname=eta", "--timeout=60s"], 70_000);
    const authId = await waitFor(
      "eta's login URL",
      async () => {
        const m = /\/register\/([A-Za-z0-9_-]+)/.exec(eta.log.join("") + ((await eta.cli(["status"])).stdout ?? ""));
        return m?.[1];
      },
      30_000,
    );
    // Negative control: not a node until an admin approves.
    expect((JSON.parse(await cli("nodes", "list", "-o", "json")) as { given_name: string }[]).map((n) => n.given_name)).not.toContain(
      "eta",
    );
    await expect(cli("auth", "register", "--user", "hope", "--auth-id", "not-a-pending-id")).rejects.toThrow(/no pending login/);
    expect(await cli("auth", "register", "--user", "hope", "--auth-id", authId)).toContain("registered");
    expect((await up).exitCode).toBe(0);
    expect((await eta.status()).BackendState).toBe("Running");
  });

  it("tailscale logout expires the node; logging in again keeps its ID and address", async () => {
    const [eta] = clients.filter((c) => c.name === "eta");
    const before = (
      JSON.parse(await cli("nodes", "list", "-o", "json")) as { id: number; given_name: string; ip_addresses: string[]; expired: boolean }[]
    ).find((n) => n.given_name === "eta")!;
    expect(before.expired).toBe(false);
    const out = await eta!.cli(["logout"]);
    expect(out.exitCode, out.all).toBe(0);
    const after = (JSON.parse(await cli("nodes", "list", "-o", "json")) as (typeof before)[]).find((n) => n.given_name === "eta")!;
    expect(after.expired).toBe(true);
    // --reset: the tailscale CLI refuses an `up` that does not restate every earlier flag.
    const relogin = await up(eta!, key, "--reset");
    expect(relogin.exitCode, relogin.all).toBe(0);
    const again = (JSON.parse(await cli("nodes", "list", "-o", "json")) as (typeof before)[]).find((n) => n.given_name === "eta")!;
    expect([again.id, again.ip_addresses, again.expired]).toEqual([before.id, before.ip_addresses, false]);
  });

  it("bad input: malformed handshakes get an error frame and a closed connection; big bodies, unknown paths and bad keys are refused", async () => {
    const { connect } = await import("node:tls");
    const { readFileSync } = await import("node:fs");
    const ca = readFileSync(ctl.caFile, "utf8");
    const raw = (handshake: Buffer) =>
      new Promise<Buffer>((resolve, reject) => {
        const s = connect({ host: "127.0.0.1", port: ctl.port, ca }, () => {
          s.write(
            `POST /ts2021 HTTP/1.1\r\nHost: x\r\nUpgrade: tailscale-control-protocol\r\nConnection: upgrade\r\n` +
              `X-Tailscale-Handshake: ${handshake.toString("base64")}\r\n\r\n`,
          );
        });
        const got: Buffer[] = [];
        s.on("data", (d: Buffer) => got.push(d));
        s.on("close", () => resolve(Buffer.concat(got)));
        s.on("error", reject);
      });
    for (const bad of [Buffer.alloc(300, 1), Buffer.alloc(100, 1), Buffer.from([0, 138, 1, 0, 96, ...new Uint8Array(96)])]) {
      const reply = await raw(bad);
      const body = reply.subarray(reply.indexOf("\r\n\r\n") + 4);
      expect(reply.toString("latin1")).toMatch(/^HTTP\/1\.1 101/);
      expect(body[0]).toBe(3); // error frame, then the server closed the connection
    }
    const c = await ControlClient.connect({ url: ctl.url, ca });
    expect((await c.postRaw("/machine/register", "x".repeat((1 << 20) + 1))).status).toBe(413);
    expect((await c.postRaw("/machine/nonsense", {})).status).toBe(404);
    expect((await c.postRaw("/machine/register", "{not json")).status).toBe(400);
    expect((await c.register({ nodeKey: formatKey("nodekey", newKeyPair().publicKey), authKey: "wg3key-nope", hostname: "x" })).Error).toBe(
      "invalid pre auth key",
    );
    const expiring = (await cli("preauthkeys", "create", "-u", "1", "-e", "1s")).trim();
    await cli("preauthkeys", "expire", expiring);
    expect((await c.register({ nodeKey: formatKey("nodekey", newKeyPair().publicKey), authKey: expiring, hostname: "x" })).Error).toBe(
      "authkey expired",
    );
    c.close();
    // The server is still serving after all that.
    expect((await alphaStatus()).BackendState).toBe("Running");
  });

  it("keeps its private keys in its state directory, readable by root only", async () => {
    const { statSync, readFileSync } = await import("node:fs");
    const state = join(ctl.dir, "state");
    const { readdirSync } = await import("node:fs");
    const files = [
      "noise.key",
      "derp.key",
      "meta.json",
      ...["users", "keys", "nodes"].flatMap((d) => readdirSync(join(state, d)).map((f) => join(d, f))),
    ];
    expect(files.length).toBeGreaterThan(8);
    for (const f of files) expect(statSync(join(state, f)).mode & 0o777).toBe(0o600);
    for (const d of ["", "users", "keys", "nodes"]) expect(statSync(join(state, d)).mode & 0o777).toBe(0o700);
    // Pre-auth keys are stored hashed: the plaintext key is in no state file, nor in the log.
    for (const f of files) expect(readFileSync(join(state, f), "utf8")).not.toContain(key);
    expect(ctl.logs.join("\n")).not.toContain(key);
  });
});
