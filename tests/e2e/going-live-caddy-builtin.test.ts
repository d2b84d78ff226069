import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TailscaleInContainer } from "../../src/nodes/tailscale.ts";
import { eventually } from "../support/eventually.ts";
import {
  type GoingLive,
  HEALTHY,
  preflight as preflightOf,
  startGoingLive,
  stopGoingLive,
  tcpProbe,
  typoServerUrl,
} from "../support/going-live.ts";
import type { LabHandle } from "../support/lab-handle.ts";
import { TIMEOUT } from "../support/timeouts.ts";

// going-live --layout caddy --control builtin: the builtin server on loopback (TLS with the
// internal certificate, as Headscale there) behind seed 002's Caddy, which gets the pebble
// certificate. Every exercise of the layout, each check failing first; going-live-caddy.test.ts
// does the same with Headscale.
const controls = (process.env.WG3_CONTROLS ?? "headscale,builtin").split(",");

describe.skipIf(!controls.includes("builtin"))("going-live --layout caddy --control builtin: the builtin server behind Caddy", () => {
  let lab: LabHandle;
  let roaming: TailscaleInContainer;
  let name: string;
  let g: GoingLive;
  const healthy = HEALTHY;
  const preflight = () => preflightOf(g);
  const probe = (port: number) => tcpProbe(g, port);

  beforeAll(async () => {
    g = await startGoingLive("live-caddy-builtin", { layout: "caddy", control: "builtin" });
    ({ lab, roaming, name } = g);
  });
  afterAll(() => stopGoingLive(g));

  it("the VPS runs the builtin server on loopback with Headscale's behind-Caddy config, and Caddy installed", async () => {
    expect(lab.recipe.exercises.map((e) => e.id)).toEqual(["a-record", "firewall", "caddy", "proxy-upgrade", "join", "stun", "server-url"]);
    expect((await lab.sh("vps", "node /opt/wg3-control/control.mjs cli version && caddy version")).exitCode).toBe(0);
    const health = await lab.sh("vps", "curl -sk https://127.0.0.1:8080/health");
    expect(health.stdout).toContain('"status":"pass"');
  });

  it("a-record and firewall: as with Headscale; opened, 443 is refused while Caddy is not started", async () => {
    expect((await lab.check("a-record")).ok).toBe(false);
    await lab.solve("a-record");
    expect((await lab.check("a-record")).ok).toBe(true);

    expect(await probe(443)).toBe("filtered");
    expect((await lab.check("firewall")).ok).toBe(false);
    await lab.solve("firewall");
    expect(await probe(443)).toBe("refused");
    expect((await lab.check("firewall")).ok).toBe(true);
  });

  it("caddy: nothing answers on 443 until Caddy starts; then a pebble certificate, and /health from the builtin server", async () => {
    expect((await lab.check("caddy")).ok).toBe(false);

    await lab.solve("caddy");

    const health = await roaming.sh(`curl -sS -i --max-time 10 https://${name}/health`);
    expect(health.stdout).toMatch(/^server: Caddy/im);
    expect(health.stdout).toContain('"status":"pass"');
    const chain = await roaming.sh(
      `openssl s_client -connect ${name}:443 -servername ${name} -CAfile /usr/local/share/ca-certificates/pebble-root.crt -no-CApath -no-CAstore </dev/null 2>/dev/null`,
    );
    expect(chain.stdout).toMatch(/issuer=.*Pebble Intermediate CA/);
    expect((await lab.check("caddy")).ok).toBe(true);
  });

  it("proxy-upgrade, before: without Upgrade and Connection no client gets in, and preflight names ts2021 and derp", async () => {
    expect((await lab.check("proxy-upgrade")).ok).toBe(false);
    const before = await preflight();
    expect(before.code).toBe(1);
    expect(before.status).toEqual({ ...healthy, ts2021: "fail", server_url: "skip", derp: "fail", stun: "fail" });
    console.log(`going-live-caddy-builtin: preflight ts2021: ${before.checks.find((c) => c.check === "ts2021")?.detail}`);
    const ts2021 = await roaming.sh(`tailscale debug ts2021 --host ${name} 2>&1`);
    // The client's own ts2021 dialer: the builtin server answers the upgrade that lost its headers with 426.
    expect(ts2021.stdout).toContain("unexpected HTTP response: 426 Upgrade Required");
    expect(ts2021.stdout).not.toContain("did noise handshake");
    console.log(`going-live-caddy-builtin: tailscale debug ts2021: ${ts2021.stdout.trim().split("\n").slice(-2).join(" | ")}`);
  });

  it("proxy-upgrade: without the two header_up lines the upgrade reaches the builtin server", async () => {
    await lab.solve("proxy-upgrade");

    expect((await lab.check("proxy-upgrade")).ok).toBe(true);
    expect(await preflight()).toMatchObject({ code: 1, status: { ...healthy, stun: "fail" } });
  });

  it("join: both clients join through Caddy; roaming reaches home and the home webserver", async () => {
    expect((await lab.check("join")).ok).toBe(false);

    await lab.solve("join");

    expect(await eventually("roaming's ping home over the tailnet", () => roaming.ping("home"), { timeout: TIMEOUT.converge })).toBe(true);
    expect((await lab.check("join")).ok).toBe(true);
  });

  it("stun: closed, netcheck finds no UDP; opened, preflight passes whole on the builtin server", async () => {
    expect((await roaming.sh("tailscale netcheck 2>&1")).stdout).toContain("UDP: false");
    expect((await lab.check("stun")).ok).toBe(false);

    await lab.solve("stun");

    expect((await lab.check("stun")).ok).toBe(true);
    expect(await preflight()).toMatchObject({ code: 0, status: healthy });
  });

  it("server-url: a typo'd server_url puts the typo in the DERP map, which roaming cannot connect to; only preflight's server_url fails", async () => {
    // The client's own view: the DERP map it was given names the typo, and the relay there refuses it.
    const { typo, derp } = await typoServerUrl(g);
    expect(derp).toContain(`Error upgrading connection to node \\"${typo}\\"`);
    expect(derp).toContain("to TLS over IPv4");
    console.log(`going-live-caddy-builtin: tailscale debug derp with server_url ${typo}: ${derp.replace(/\s+/g, " ").slice(0, 600)}`);
    expect((await lab.check("server-url")).ok).toBe(false);
    expect(await preflight()).toMatchObject({ code: 1, status: { ...healthy, server_url: "fail" } });

    await lab.solve("server-url");

    expect((await lab.check("server-url")).ok).toBe(true);
    expect(await preflight()).toMatchObject({ code: 0, status: healthy });
  });
});
