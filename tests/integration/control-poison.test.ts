import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../../src/control/admin-cli.ts";
import { ControlClient } from "../../src/control/client.ts";
import { formatKey, newKeyPair, zeroKey } from "../../src/control/keys.ts";
import { eventually } from "../support/eventually.ts";
import { TIMEOUT } from "../support/timeouts.ts";
import { mutate, prng } from "../unit/control-fixtures/mutate.ts";
import { cleanup, HostControl, HostTailscaled, tailscaleBins, tempDir } from "./tailscaled-host.ts";

/**
 * One node must not be able to cut off the control plane for the others. A node registered
 * with an ordinary pre-auth key sends values real clients never send (a disco key that is not
 * hex, an endpoint that is not ip:port, a fractional capability version, a Hostinfo field of
 * the wrong type). Peers decode their netmap all or nothing, so if any of that reached them a
 * new node would never reach Running and existing ones would stop getting updates.
 */

const bins = tailscaleBins();
if (!bins) throw new Error("the pinned tailscale binaries are not built: run ./start.ts setup first");

/** What tailscaled logs when a map response does not decode (seen with 1.98.10). */
const DECODE_ERROR = /cannot unmarshal|wrong size|invalid port|unable to parse IP|ParseAddr|netip\.|invalid opt\.Bool/;

const nodeKey = () => formatKey("nodekey", newKeyPair().publicKey);
const discoKey = () => formatKey("discokey", newKeyPair().publicKey);

interface Poison {
  name: string;
  /** Changes to an otherwise valid register request. */
  register?: Record<string, unknown>;
  /** Changes to an otherwise valid lite map request. */
  map?: Record<string, unknown>;
}

const POISONS: Poison[] = [
  { name: "a disco key that is not hex", map: { DiscoKey: "discokey:not-hex" } },
  { name: "an endpoint that is not ip:port", map: { Endpoints: ["not-an-ip:port"] } },
  { name: "a fractional capability version", register: { Version: 138.5 }, map: { Version: 138.5 } },
  { name: "a home DERP region as a string", register: { Hostinfo: { Hostname: "poison", NetInfo: { PreferredDERP: "999" } } } },
  { name: "a routable IP that is not a prefix", register: { Hostinfo: { Hostname: "poison", RoutableIPs: ["10.0.0.0/99"] } } },
  { name: "an opt.Bool as a string", map: { Hostinfo: { Hostname: "poison", NetInfo: { WorkingUDP: "true" } } } },
];

describe("a node sending malformed fields cannot break its peers' netmaps", () => {
  const dir = tempDir("wg3-control-poison-");
  const ctl = new HostControl(join(dir, "control"));
  const cli = (...args: string[]) => runCli(args);
  const started: HostTailscaled[] = [];
  let key = "";
  let alpha: HostTailscaled;
  /** alpha's own register and map requests, as tailscaled 1.98 sent them: the fuzz seeds. */
  const recorded: { path: string; body: Record<string, unknown> }[] = [];

  const tailscaled = async (name: string) => {
    const c = new HostTailscaled(name, join(dir, name), bins, { SSL_CERT_FILE: ctl.caFile });
    started.push(c);
    await c.start();
    return c;
  };
  const up = (c: HostTailscaled, timeout = "25s") =>
    c.cli(["up", `--login-server=${ctl.url}`, `--auth-key=${key}`, `--hostname=${c.name}`, `--timeout=${timeout}`], 40_000);
  const peers = async (c: HostTailscaled) => Object.values((await c.status()).Peer ?? {}).map((p) => p.HostName);

  beforeAll(async () => {
    await ctl.start();
    process.env.WG3_CONTROL_SOCKET = ctl.socket;
    await cli("users", "create", "hope");
    key = (await cli("preauthkeys", "create", "-u", "hope", "--reusable")).trim();
    alpha = await tailscaled("alpha");
    ctl.server.onRequestBody = (path, body) => recorded.push({ path, body: JSON.parse(body.toString()) });
    const r = await up(alpha);
    expect(r.exitCode, r.all).toBe(0);
  });

  afterAll(async () => {
    for (const c of started) await c.stop();
    await ctl.stop();
    delete process.env.WG3_CONTROL_SOCKET;
    cleanup(dir);
  });

  /** Register a node over the raw protocol with a valid request plus the poison; send a lite update. */
  async function poisonNode(p: Poison): Promise<{ register: number; map: number }> {
    const c = await ControlClient.connect({ url: ctl.url, ca: readFileSync(ctl.caFile, "utf8") });
    const nk = nodeKey();
    const reg = await c.postRaw("/machine/register", {
      Version: 138,
      NodeKey: nk,
      OldNodeKey: zeroKey("nodekey"),
      Auth: { AuthKey: key },
      Expiry: "0001-01-01T00:00:00Z",
      Followup: "",
      Hostinfo: { Hostname: "poison", OS: "linux" },
      ...p.register,
    });
    const map = await c.postRaw("/machine/map", {
      Version: 138,
      NodeKey: nk,
      DiscoKey: discoKey(),
      Endpoints: ["192.0.2.7:41641"],
      Hostinfo: { Hostname: "poison", OS: "linux" },
      Stream: false,
      OmitPeers: true,
      Compress: "zstd",
      ...p.map,
    });
    c.close();
    return { register: reg.status, map: map.status };
  }

  /** Each case starts clean: a poison node that got in (before the fix) would spoil the next. */
  async function removePoisonNodes(): Promise<void> {
    const nodes = JSON.parse(await cli("nodes", "list", "-o", "json")) as { id: number; given_name: string }[];
    for (const n of nodes.filter((x) => x.given_name.startsWith("poison"))) await cli("nodes", "delete", "-i", String(n.id));
  }

  it.each(POISONS)("$name: refused, and a new node still reaches Running and sees its peers", async (p) => {
    await removePoisonNodes();
    const before = alpha.log.join("").length;
    const got = await poisonNode(p);

    const name = `n${POISONS.indexOf(p)}`;
    const fresh = await tailscaled(name);
    const r = await up(fresh);
    expect(r.exitCode, `${r.all}\n${fresh.tail(20)}`).toBe(0);
    expect((await fresh.status()).BackendState).toBe("Running");
    await eventually(`${name} lists alpha`, async () => (await peers(fresh)).includes("alpha"), { timeout: TIMEOUT.converge });
    // alpha keeps decoding its updates: it learns about the new node.
    await eventually(`alpha lists ${name}`, async () => (await peers(alpha)).includes(name), { timeout: TIMEOUT.converge });
    expect(fresh.log.join("")).not.toMatch(DECODE_ERROR);
    expect(alpha.log.join("").slice(before)).not.toMatch(DECODE_ERROR);
    await fresh.stop();
    // The refusal is a plain 400 on the request that carried the bad field, with a log line.
    if (p.register) expect(got.register).toBe(400);
    else expect(got).toEqual({ register: 200, map: 400 });
    expect(ctl.logs.join("\n")).toMatch(/(register|map) refused from mkey:/);
  });

  it("fuzz (bounded): mutated real requests from a registered node never break a peer's netmap nor the server", async () => {
    ctl.server.onRequestBody = undefined;
    await removePoisonNodes();
    const seeds = {
      register: recorded.find((r) => r.path === "/machine/register")!.body,
      maps: recorded.filter((r) => r.path === "/machine/map").map((r) => r.body),
    };
    expect(seeds.maps.length).toBeGreaterThan(0);
    const rnd = prng(Number(process.env.WG3_FUZZ_SEED ?? 7));
    const c = await ControlClient.connect({ url: ctl.url, ca: readFileSync(ctl.caFile, "utf8") });
    const nk = nodeKey();
    const base = { NodeKey: nk, Auth: { AuthKey: key }, Hostinfo: { ...(seeds.register.Hostinfo as object), Hostname: "poison" } };
    expect((await c.postRaw("/machine/register", { ...seeds.register, ...base })).status).toBe(200);
    const statuses = new Map<number, number>();
    const before = alpha.log.join("").length;
    const deadline = Date.now() + Number(process.env.WG3_FUZZ_MS ?? 8_000);
    let sent = 0;
    while (Date.now() < deadline) {
      const register = rnd() < 0.3;
      const seed = register ? { ...seeds.register, ...base } : { ...seeds.maps[Math.floor(rnd() * seeds.maps.length)]!, NodeKey: nk };
      const body = { ...(mutate({ ...seed, Stream: false }, rnd) as object), NodeKey: nk, Stream: false };
      const res = await c.postRaw(register ? "/machine/register" : "/machine/map", body);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      sent++;
    }
    c.close();
    // Both kinds of outcome happened, and never a server error.
    expect([...statuses.keys()].sort()).toEqual([200, 400]);
    // A new node still joins and sees alpha; alpha still decodes updates about it.
    const fresh = await tailscaled("after-fuzz");
    const r = await up(fresh);
    expect(r.exitCode, `${r.all}\n${fresh.tail(20)}`).toBe(0);
    await eventually("after-fuzz lists alpha", async () => (await peers(fresh)).includes("alpha"), { timeout: TIMEOUT.converge });
    await eventually("alpha lists after-fuzz", async () => (await peers(alpha)).includes("after-fuzz"), { timeout: TIMEOUT.converge });
    expect(fresh.log.join("")).not.toMatch(DECODE_ERROR);
    expect(alpha.log.join("").slice(before)).not.toMatch(DECODE_ERROR);
    expect(sent).toBeGreaterThan(50);
  });

  it("a poison stored by an older server does not survive a restart: it is dropped on load", async () => {
    await removePoisonNodes();
    const { readdirSync, writeFileSync } = await import("node:fs");
    const nodesDir = join(ctl.dir, "state", "nodes");
    await ctl.stop();
    // What the previous server wrote for a node that sent these: the client's text, unchecked.
    const [file] = readdirSync(nodesDir).filter((f) => f.endsWith(".json"));
    const rec = JSON.parse(readFileSync(join(nodesDir, file!), "utf8"));
    const id = 900;
    const poisoned = {
      ...rec,
      id,
      stableId: "npoison",
      givenName: "poison",
      machineKey: formatKey("mkey", newKeyPair().publicKey),
      nodeKey: nodeKey(),
      ipv4: "100.64.3.132",
      ipv6: "fd7a:115c:a1e0::384",
      discoKey: "discokey:not-hex",
      endpoints: ["not-an-ip:port"],
      cap: 138.5,
      hostinfo: { Hostname: "poison", NetInfo: { PreferredDERP: "999", WorkingUDP: "true" } },
    };
    writeFileSync(join(nodesDir, `${id}.json`), JSON.stringify(poisoned));
    await ctl.start();
    const before = alpha.log.join("").length;
    const fresh = await tailscaled("after-restart");
    const r = await up(fresh);
    expect(r.exitCode, `${r.all}\n${fresh.tail(20)}`).toBe(0);
    await eventually("after-restart lists alpha", async () => (await peers(fresh)).includes("alpha"), { timeout: TIMEOUT.converge });
    await eventually("alpha lists after-restart", async () => (await peers(alpha)).includes("after-restart"), {
      timeout: TIMEOUT.converge,
    });
    expect(fresh.log.join("")).not.toMatch(DECODE_ERROR);
    expect(alpha.log.join("").slice(before)).not.toMatch(DECODE_ERROR);
    expect(ctl.logs.join("\n")).toMatch(/node 900: dropped a stored disco key/);
  });
});
