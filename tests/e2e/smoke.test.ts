/**
 * Smoke test: the platform teaches something real.
 *
 *   host-a (10.212.250.10) ── net-a ── router (.2 / .2) ── net-b ── host-b (10.212.251.10)
 *
 * Two isolated engine networks, a host on each, a router container on both with IP forwarding
 * on. Every reachability assertion runs its probe first where it must fail (negative control),
 * then changes exactly one thing (routes, the tunnel) and polls the same probe until it passes.
 * Everything is labelled with a per-run lab name and removed by label in afterAll.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine, ExecResult } from "../../src/engine/engine.ts";
import { ensureEngine } from "../../src/engine/ensure.ts";
import { LABEL, labLabels } from "../../src/engine/labels.ts";
import { imageRef } from "../../src/images/build.ts";
import { cidrsOverlap } from "../../src/recipe/load.ts";
import { versions } from "../../src/versions.ts";
import { genKeyPair } from "../../src/wireguard/keys.ts";
import { eventually } from "../support/eventually.ts";
import { startTs } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

const RUN = randomBytes(4).toString("hex");
const ID = { lab: `smoke-${RUN}`, recipe: "smoke", run: RUN };
const PREFIX = `wg3-smoke-${RUN}`;

// Outside 10.213.0.0/16, where labs with a name pick their random /24s: files run side by side.
const NET_A = { key: "net-a", name: `${PREFIX}-net-a`, subnet: "10.212.250.0/24", gateway: "10.212.250.1" };
const NET_B = { key: "net-b", name: `${PREFIX}-net-b`, subnet: "10.212.251.0/24", gateway: "10.212.251.1" };
type Net = typeof NET_A;

const HOST_A = { name: `${PREFIX}-host-a`, ip: "10.212.250.10" };
const HOST_B = { name: `${PREFIX}-host-b`, ip: "10.212.251.10" };
const ROUTER = { name: `${PREFIX}-router`, ipA: "10.212.250.2", ipB: "10.212.251.2" };

const TUNNEL = { a: "10.99.0.1", b: "10.99.0.2", port: 51820 };

let engine: Engine | undefined;

function eng(): Engine {
  if (!engine) throw new Error("the engine was not set up (beforeAll failed)");
  return engine;
}

const oneLine = (r: ExecResult) => `exit ${r.exitCode}: ${`${r.stdout} ${r.stderr}`.replace(/\s+/g, " ").trim()}`;

/** The probe every reachability check uses: one echo request, one second to answer. */
function ping(container: string, ip: string): Promise<ExecResult> {
  return eng().exec(container, ["ping", "-n", "-c1", "-W1", ip], { timeoutMs: 15_000 });
}

async function expectPingFails(container: string, ip: string): Promise<ExecResult> {
  const r = await ping(container, ip);
  // 1 = ping ran and got no reply; 2 = an error such as "Network is unreachable". Anything else
  // (127: no ping in the image, -1: exec broke) would make the negative control meaningless.
  expect([1, 2], `ping ${ip} from ${container} should fail: ${oneLine(r)}`).toContain(r.exitCode);
  return r;
}

/** Poll the ping until it answers (every 200 ms at most); its output. */
async function waitForPing(container: string, ip: string): Promise<string> {
  const r = await eventually(
    `${container} to ping ${ip}`,
    async () => {
      const r = await ping(container, ip);
      if (r.exitCode !== 0) throw new Error(oneLine(r));
      return r;
    },
    { interval: 200 },
  );
  return r.stdout;
}

async function sh(container: string, script: string): Promise<string> {
  const r = await eng().sh(container, script, { timeoutMs: TIMEOUT.exec });
  if (r.exitCode !== 0) throw new Error(`\`${script}\` in ${container} failed: ${oneLine(r)}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------------------------
// Topology

async function createNetwork(net: Net): Promise<void> {
  // The same call the lab lifecycle makes: see Engine.createNetwork for why it is internal.
  await eng().createNetwork({ ...net, isolated: true, labels: labLabels(ID, { [LABEL.network]: net.key }) });
}

interface NodeSpec {
  name: string;
  node: string;
  nets: [Net, string][];
  sysctls?: Record<string, string>;
}

async function createNode(spec: NodeSpec): Promise<void> {
  await eng().createContainer({
    name: spec.name,
    hostname: spec.node,
    image: imageRef("wg-peer"),
    env: {},
    labels: labLabels(ID, { [LABEL.node]: spec.node }),
    caps: ["NET_ADMIN", "NET_RAW"],
    sysctls: spec.sysctls ?? {},
    devices: ["/dev/net/tun"],
    networks: spec.nets.map(([net, ip]) => ({ name: net.name, ip })),
  });
  await eng().start(spec.name);
}

/** Hosts send everything off-link to their bridge gateway, the engine host. */
async function defaultRouteViaBridge(host: string, net: Net): Promise<void> {
  await sh(host, `ip route replace default via ${net.gateway}`);
}

/** Each host sends the other network to the router (idempotent: `replace`, not `add`). */
async function routeViaRouter(): Promise<void> {
  await sh(HOST_A.name, `ip route replace ${NET_B.subnet} via ${ROUTER.ipA}`);
  await sh(HOST_B.name, `ip route replace ${NET_A.subnet} via ${ROUTER.ipB}`);
}

/** Run a one-shot container to completion and return its exit code and output. */
async function runOnce(
  node: string,
  image: string,
  entrypoint: string[] | undefined,
  cmd: string[],
): Promise<{ exitCode: number; output: string }> {
  return eng().runOnce(image, cmd, { entrypoint, labels: labLabels(ID, { [LABEL.node]: node }), timeoutMs: TIMEOUT.slowExec });
}

// ---------------------------------------------------------------------------------------------

describe("smoke: isolated networks, a router, a wireguard-go tunnel, the Tailscale images", () => {
  beforeAll(async () => {
    engine = await ensureEngine();
    const e = engine;
    // Fixed subnets: refuse clearly (and touch nothing) when someone already holds them.
    for (const n of await e.listNetworks("all")) {
      for (const subnet of n.subnets) {
        const clash = [NET_A, NET_B].find((ours) => cidrsOverlap(subnet, ours.subnet));
        if (clash) {
          throw new Error(
            `subnet ${clash.subnet} is already used by engine network "${n.name}" (${subnet}, lab ${n.labels[LABEL.lab] ?? "-"}, recipe ${n.labels[LABEL.recipe] ?? "-"}); remove it first`,
          );
        }
      }
    }
    try {
      await createNetwork(NET_A);
      await createNetwork(NET_B);
      await Promise.all([
        createNode({ name: HOST_A.name, node: "host-a", nets: [[NET_A, HOST_A.ip]] }),
        createNode({ name: HOST_B.name, node: "host-b", nets: [[NET_B, HOST_B.ip]] }),
        createNode({
          name: ROUTER.name,
          node: "router",
          nets: [
            [NET_A, ROUTER.ipA],
            [NET_B, ROUTER.ipB],
          ],
          sysctls: { "net.ipv4.ip_forward": "1" },
        }),
      ]);
      // Podman's internal networks give no default route; set the one a LAN host would have.
      await defaultRouteViaBridge(HOST_A.name, NET_A);
      await defaultRouteViaBridge(HOST_B.name, NET_B);
    } catch (err) {
      await e.removeLabelled({ lab: ID.lab }).catch(() => {});
      throw err;
    }
  }, TIMEOUT.cli);

  afterAll(async () => {
    if (!engine) return;
    await engine.removeLabelled({ lab: ID.lab });
    const left = await engine.listContainers({ lab: ID.lab });
    const nets = await engine.listNetworks({ lab: ID.lab });
    expect({ containers: left.length, networks: nets.length }, "everything labelled for this run is gone").toEqual({
      containers: 0,
      networks: 0,
    });
  }, TIMEOUT.teardown);

  it("each host reaches its bridge gateway and the router on its own network (the probe works)", async () => {
    await waitForPing(HOST_A.name, NET_A.gateway);
    await waitForPing(HOST_B.name, NET_B.gateway);
    await waitForPing(HOST_A.name, ROUTER.ipA);
    await waitForPing(HOST_B.name, ROUTER.ipB);
    await waitForPing(ROUTER.name, HOST_A.ip);
    await waitForPing(ROUTER.name, HOST_B.ip);
  });

  it("the hosts cannot reach each other through the engine's bridges (negative control)", async () => {
    // The probe really takes the bridge path: the host's default route via the engine gateway.
    expect(await sh(HOST_A.name, `ip route get ${HOST_B.ip}`)).toContain(`via ${NET_A.gateway}`);
    expect(await sh(HOST_B.name, `ip route get ${HOST_A.ip}`)).toContain(`via ${NET_B.gateway}`);
    await expectPingFails(HOST_A.name, HOST_B.ip);
    await expectPingFails(HOST_B.name, HOST_A.ip);
  });

  it("the hosts reach each other through the router once routes point at it", async () => {
    expect((await sh(ROUTER.name, "cat /proc/sys/net/ipv4/ip_forward")).trim()).toBe("1");
    // Still failing right before the one change (negative control for this step).
    await expectPingFails(HOST_A.name, HOST_B.ip);

    await routeViaRouter();
    expect(await sh(HOST_A.name, `ip route get ${HOST_B.ip}`)).toContain(`via ${ROUTER.ipA}`);
    expect(await sh(HOST_B.name, `ip route get ${HOST_A.ip}`)).toContain(`via ${ROUTER.ipB}`);

    const ab = await waitForPing(HOST_A.name, HOST_B.ip);
    const ba = await waitForPing(HOST_B.name, HOST_A.ip);
    // One router hop: the reply's TTL (64 at the sender) was decremented exactly once.
    expect(ab).toMatch(/ttl=63\b/);
    expect(ba).toMatch(/ttl=63\b/);
  });

  it("a wireguard-go tunnel between the hosts handshakes and carries a ping", async () => {
    // The tunnel's underlay is the routed path (idempotent, so this test also runs alone).
    await routeViaRouter();
    await waitForPing(HOST_A.name, HOST_B.ip);

    // Negative control: no wg0 yet, and the tunnel address does not answer.
    for (const h of [HOST_A.name, HOST_B.name]) {
      const link = await eng().exec(h, ["ip", "link", "show", "wg0"]);
      expect(link.exitCode, `wg0 must not exist on ${h} yet: ${oneLine(link)}`).not.toBe(0);
    }
    await expectPingFails(HOST_A.name, TUNNEL.b);

    const ka = genKeyPair();
    const kb = genKeyPair();
    const conf = (priv: string, addr: string, peerPub: string, endpoint: string, peerAddr: string) =>
      [
        "[Interface]",
        `PrivateKey = ${priv}`,
        `Address = ${addr}/24`,
        `ListenPort = ${TUNNEL.port}`,
        "",
        "[Peer]",
        `PublicKey = ${peerPub}`,
        `Endpoint = ${endpoint}:${TUNNEL.port}`,
        `AllowedIPs = ${peerAddr}/32`,
        "",
      ].join("\n");
    const up = async (container: string, text: string) => {
      await sh(container, `umask 077 && cat > /etc/wireguard/wg0.conf <<'EOF'\n${text}EOF`);
      // No kernel module here: wg-quick falls back to wireguard-go by itself.
      const r = await eng().exec(container, ["wg-quick", "up", "wg0"], { timeoutMs: TIMEOUT.slowExec });
      expect(r.exitCode, `wg-quick up wg0 on ${container}: ${oneLine(r)}`).toBe(0);
      await sh(container, "pgrep -x wireguard-go");
    };
    await up(HOST_A.name, conf(ka.privateKey, TUNNEL.a, kb.publicKey, HOST_B.ip, TUNNEL.b));
    await up(HOST_B.name, conf(kb.privateKey, TUNNEL.b, ka.publicKey, HOST_A.ip, TUNNEL.a));

    expect(await sh(HOST_A.name, `ip route get ${TUNNEL.b}`)).toContain("dev wg0");

    const handshake = async (container: string) => {
      const out = await sh(container, "wg show wg0 latest-handshakes");
      return Number(out.trim().split(/\s+/)[1] ?? 0);
    };
    await eventually(
      `a WireGuard handshake and a ping ${HOST_A.name} -> ${TUNNEL.b}`,
      async () => {
        const p = await ping(HOST_A.name, TUNNEL.b);
        const hs = await handshake(HOST_A.name);
        if (!(p.exitCode === 0 && hs > 0)) throw new Error(`latest-handshake ${hs}; ping ${oneLine(p)}`);
        return true;
      },
      { timeout: TIMEOUT.converge, interval: 200 },
    );
    expect(await handshake(HOST_B.name)).toBeGreaterThan(0);
    await waitForPing(HOST_B.name, TUNNEL.a);

    const transfer = (await sh(HOST_A.name, "wg show wg0 transfer")).trim().split(/\s+/);
    expect(Number(transfer[1]), `bytes received over wg0 (${transfer.join(" ")})`).toBeGreaterThan(0);
    expect(Number(transfer[2]), `bytes sent over wg0 (${transfer.join(" ")})`).toBeGreaterThan(0);
  });

  it("tailscaled --version runs inside the tailscale image", async () => {
    const r = await runOnce("tailscale-version", imageRef("tailscale"), ["tailscaled"], ["--version"]);
    expect(r.exitCode, r.output).toBe(0);
    expect(r.output).toContain(versions.tailscale.replace(/^v/, ""));
  });

  it("headscale version runs inside the headscale image", async () => {
    const r = await runOnce("headscale-version", imageRef("headscale"), undefined, ["headscale", "version"]);
    expect(r.exitCode, r.output).toBe(0);
    expect(r.output).toContain(versions.headscale.replace(/^v/, ""));
  });

  it("./start.ts stop removes a lab whose recipe is not (or no longer) in recipes/, by its labels", async () => {
    // Negative control: a recipe nothing runs of is still refused in one sentence.
    const none = await startTs(["stop", "smoke", "--lab", `${ID.lab}-none`]);
    expect(none.code).toBe(1);
    expect(none.stderr.trim()).toMatch(/^Unknown recipe "smoke"; the recipes are: recipe-0, /);
    expect((await eng().listContainers({ lab: ID.lab })).length).toBeGreaterThan(0);
    const r = await startTs(["stop", "smoke", "--lab", ID.lab]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/removed 3 containers and 2 networks/);
    expect(await eng().listContainers({ lab: ID.lab })).toEqual([]);
  });
});
