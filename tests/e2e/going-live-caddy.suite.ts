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

type Control = "headscale" | "builtin";

/** What differs between the two servers behind Caddy. */
const SERVER: Record<Control, { title: string; version: string; upgradeLost: string }> = {
  headscale: {
    title: "Headscale behind Caddy (seed 002)",
    version: "headscale version",
    // What the server answers an upgrade that lost its headers on the way.
    upgradeLost: "unexpected HTTP response: 500 Internal Server Error",
  },
  builtin: {
    title: "the builtin server behind Caddy, with Headscale's behind-Caddy config",
    version: "node /opt/wg3-control/control.mjs cli version",
    upgradeLost: "unexpected HTTP response: 426 Upgrade Required",
  },
};

/**
 * going-live --layout caddy, the order an attendee goes: A record, firewall, Caddy in front with
 * its pebble certificate, the upgrade that seed 002's Caddyfile loses, then the clients. Each
 * check fails first for the real symptom, then passes after its solve.
 */
export function caddySuite(control: Control): void {
  const server = SERVER[control];
  const tag = `going-live-caddy-${control}`;
  const controls = (process.env.WG3_CONTROLS ?? "headscale,builtin").split(",");

  describe.skipIf(!controls.includes(control))(`going-live --layout caddy --control ${control}: ${server.title}`, () => {
    let lab: LabHandle;
    let roaming: TailscaleInContainer;
    let name: string;
    let g: GoingLive;
    const preflight = () => preflightOf(g);
    const probe = (port: number) => tcpProbe(g, port);

    beforeAll(async () => {
      g = await startGoingLive(`live-caddy-${control.slice(0, 2)}`, { layout: "caddy", control });
      ({ lab, roaming, name } = g);
    });
    afterAll(() => stopGoingLive(g));

    it("the layout's exercises (caddy and proxy-upgrade in place of certificate); the server on loopback with its own TLS, Caddy installed", async () => {
      expect(lab.recipe.exercises.map((e) => e.id)).toEqual([
        "a-record",
        "firewall",
        "caddy",
        "proxy-upgrade",
        "join",
        "stun",
        "server-url",
      ]);
      expect((await lab.sh("vps", `${server.version} && caddy version`)).exitCode).toBe(0);
      const health = await eventually("the server's /health on 127.0.0.1:8080", async () => {
        const r = await lab.sh("vps", "curl -sk https://127.0.0.1:8080/health");
        if (!r.stdout.includes('"status":"pass"')) throw new Error(`exit ${r.exitCode}: ${r.stdout}${r.stderr}`);
        return r.stdout;
      });
      expect(health).toContain('"status":"pass"');
    });

    it("a-record: the same exercise as without Caddy", async () => {
      expect((await lab.check("a-record")).ok).toBe(false);
      await lab.solve("a-record");
      expect((await lab.check("a-record")).ok).toBe(true);
    });

    it("firewall: a dropped port times out; opened, it is refused while Caddy is not started, and the check grades the firewall alone", async () => {
      expect(await probe(443)).toBe("filtered");
      expect((await lab.check("firewall")).ok).toBe(false);

      await lab.solve("firewall");

      expect(await probe(443)).toBe("refused");
      expect(await probe(80)).toBe("refused");
      expect((await lab.check("firewall")).ok).toBe(true);
    });

    it("caddy: nothing answers on 443 until Caddy starts; then it holds a pebble certificate for the name and proxies /health to the server", async () => {
      expect((await lab.check("caddy")).ok).toBe(false);

      await lab.solve("caddy");

      const health = await roaming.sh(`curl -sS -i --max-time 10 https://${name}/health`);
      expect(health.stdout).toMatch(/^server: Caddy/im);
      expect(health.stdout).toContain('"status":"pass"');
      const chain = await roaming.sh(
        `openssl s_client -connect ${name}:443 -servername ${name} -CAfile /usr/local/share/ca-certificates/pebble-root.crt -no-CApath -no-CAstore </dev/null 2>/dev/null`,
      );
      expect(chain.stdout).toMatch(/issuer=.*Pebble Intermediate CA/);
      expect(chain.stdout).toContain("Verify return code: 0 (ok)");
      expect((await lab.check("caddy")).ok).toBe(true);
    });

    it("proxy-upgrade, before: Caddy drops Upgrade and Connection, so a client cannot join and preflight names ts2021 (and /derp)", async () => {
      expect((await lab.check("proxy-upgrade")).ok).toBe(false);
      const before = await preflight();
      expect(before.code).toBe(1);
      // 3478/udp is still closed (exercise stun, last).
      expect(before.status).toEqual({ ...HEALTHY, ts2021: "fail", server_url: "skip", derp: "fail", stun: "fail" });
      console.log(`${tag}: preflight ts2021: ${before.checks.find((c) => c.check === "ts2021")?.detail}`);

      await lab.sh("vps", "headscale users list | grep -qw hope || headscale users create hope");
      const key = (await lab.sh("vps", "headscale preauthkeys create -u 1")).stdout.trim().split("\n").at(-1)!;
      const up = await roaming.sh(`tailscale up --login-server https://${name} --auth-key ${key} --hostname roaming --timeout 10s`);
      expect(up.exitCode).not.toBe(0);
      expect((await lab.sh("vps", "headscale nodes list -o json")).stdout.trim()).toMatch(/^(\[\]|null)$/);
      // The client's own ts2021 dialer: what the server answers the upgrade that lost its headers.
      const ts2021 = await roaming.sh(`tailscale debug ts2021 --host ${name} 2>&1`);
      expect(ts2021.stdout).toContain(server.upgradeLost);
      expect(ts2021.stdout).not.toContain("did noise handshake");
      console.log(`${tag}: tailscale up: exit ${up.exitCode}: ${(up.stdout + up.stderr).trim().split("\n").at(-1)}`);
      console.log(`${tag}: tailscale debug ts2021: ${ts2021.stdout.trim().split("\n").slice(-2).join(" | ")}`);
    });

    it("proxy-upgrade: without the two header_up lines the upgrade goes through Caddy, and preflight passes but for stun", async () => {
      await lab.solve("proxy-upgrade");

      expect((await lab.check("proxy-upgrade")).ok).toBe(true);
      expect(await preflight()).toMatchObject({ code: 1, status: { ...HEALTHY, stun: "fail" } });
    });

    it("join: both clients join through Caddy; roaming reaches home", async () => {
      expect((await lab.check("join")).ok).toBe(false);
      // roaming's failed `tailscale up` (proxy-upgrade, before) keeps trying in tailscaled.
      console.log(`${tag}: nodes before join's solve: ${(await lab.sh("vps", "headscale nodes list")).stdout.trim()}`);

      await lab.solve("join");

      // MagicDNS's "home" and the first packet may lag the route the solve waited for (seen once: one ping right after failed).
      expect(await eventually("roaming's ping home over the tailnet", () => roaming.ping("home"), { timeout: TIMEOUT.converge })).toBe(
        true,
      );
      expect((await lab.check("join")).ok).toBe(true);
    });

    it("stun: past Caddy, 3478/udp is the server's own; closed, netcheck finds no UDP; opened, preflight passes whole", async () => {
      expect((await roaming.sh("tailscale netcheck 2>&1")).stdout).toContain("UDP: false");
      expect((await lab.check("stun")).ok).toBe(false);

      await lab.solve("stun");

      expect((await lab.check("stun")).ok).toBe(true);
      expect(await preflight()).toMatchObject({ code: 0, status: HEALTHY });
    });

    it("server-url: behind Caddy too, a typo'd server_url puts the typo in the DERP map, where Caddy has no certificate; only preflight's server_url fails", async () => {
      // The client's own view: the DERP map it was given names the typo, and the relay there refuses it.
      const { typo, derp } = await typoServerUrl(g);
      expect(derp).toContain(`Error upgrading connection to node \\"${typo}\\"`);
      expect(derp).toContain("to TLS over IPv4");
      console.log(`${tag}: tailscale debug derp with server_url ${typo}: ${derp.replace(/\s+/g, " ").slice(0, 600)}`);
      expect((await lab.check("server-url")).ok).toBe(false);
      expect(await preflight()).toMatchObject({ code: 1, status: { ...HEALTHY, server_url: "fail" } });

      await lab.solve("server-url");

      expect((await lab.check("server-url")).ok).toBe(true);
      expect(await preflight()).toMatchObject({ code: 0, status: HEALTHY });
    });
  });
}
