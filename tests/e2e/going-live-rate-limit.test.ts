import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TailscaleInContainer } from "../../src/nodes/tailscale.ts";
import { eventually } from "../support/eventually.ts";
import { type GoingLive, HEALTHY, preflight as preflightOf, startGoingLive, stopGoingLive } from "../support/going-live.ts";
import type { LabHandle } from "../support/lab-handle.ts";
import { startTs } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

// going-live's rate-limit exercise, with each control server terminating TLS itself: a server
// restarted without its certificate store orders anew each time until the CA's production
// directory refuses (429 rateLimited, within seconds in the server's log); staging issues from
// a root nobody trusts; back on production the certificate verifies again. The check and
// preflight's tls fail while the quota is burned, and pass after the solve.
const controls = (process.env.WG3_CONTROLS ?? "headscale,builtin").split(",");

/** The server's own log line for the CA's refusal: Headscale's ACME client logs the CA's answer, ours its detail. */
const REFUSAL_LOG: Record<string, RegExp> = {
  headscale:
    /acme request returned error body=.*urn:ietf:params:acme:error:rateLimited.*too many certificates \(5\) already issued.*status_code=429/,
  builtin:
    /acme: no certificate for headscale\.example\.com from https:\/\/acme\.example\.net:14000\/dir: too many certificates \(5\) already issued for this exact set of identifiers/,
};

describe.each(controls)("going-live rate-limit (--control %s)", (control) => {
  let lab: LabHandle;
  let roaming: TailscaleInContainer;
  let name: string;
  let g: GoingLive;
  const healthy = HEALTHY;
  /** preflight's answer per check, with the check a skip rests on (`skip:tls`). */
  const preflight = async () => {
    const p = await preflightOf(g);
    return { code: p.code, status: Object.fromEntries(p.checks.map((c) => [c.check, c.because ? `${c.status}:${c.because}` : c.status])) };
  };
  const limiterStatus = async () => (await lab.sh("pebble", "acme-rate-limit status")).stdout.trim();
  const roamingCurl = () => roaming.sh(`curl -sS --max-time 10 https://${name}/health`);

  beforeAll(async () => {
    g = await startGoingLive(`rl-${control}`, { control });
    ({ lab, roaming, name } = g);
    for (const e of ["a-record", "firewall", "certificate"]) await lab.solve(e);
    expect((await lab.sh("vps", "nft add rule inet cloud_firewall inbound udp dport 3478 accept")).exitCode).toBe(0);
  });
  afterAll(() => stopGoingLive(g));

  it("healthy: one certificate counted, the check and every preflight line pass", async () => {
    expect(await limiterStatus()).toMatch(/^headscale\.example\.com: 1 of 5 certificates in the last 10m0s, 0 refused$/);
    expect((await lab.check("rate-limit")).ok).toBe(true);
    expect(await preflight()).toEqual({ code: 0, status: healthy });
  });

  it("restarts without the certificate store burn the quota: the CA refuses with 429 rateLimited, the server's log says so within seconds, the check and preflight's tls fail", async () => {
    // One certificate per restart until the CA refuses one (the lab's limit: 5 in 10 minutes).
    let lastRestart = 0;
    for (let i = 0; i < 6 && !/ [1-9]\d* refused/.test(await limiterStatus()); i++) {
      lastRestart = Date.now();
      const r = await lab.sh(
        "vps",
        `rm -rf /var/lib/headscale/cache && headscale-service restart && curl -sk --max-time 20 -o /dev/null --resolve ${name}:443:127.0.0.1 https://${name}/health; true`,
      );
      expect(r.exitCode).toBe(0);
    }
    expect(await limiterStatus()).toMatch(
      /^headscale\.example\.com: 5 of 5 certificates in the last 10m0s, [1-9]\d* refused, refusing for \d+ s more$/,
    );
    const line = await eventually(
      "the server's log to show the CA's refusal",
      async () => {
        const l = (await lab.engine.logTail(lab.container("vps"), 300)).split("\n").find((x) => REFUSAL_LOG[control]!.test(x));
        if (!l) throw new Error("no refusal in the VPS's log yet");
        return l;
      },
      { timeout: 20_000 },
    );
    console.log(
      `going-live rate-limit (${control}): ${((Date.now() - lastRestart) / 1000).toFixed(1)} s after the last restart: ${line.slice(0, 400)}`,
    );
    const pebbleLog = await lab.engine.logTail(lab.container("pebble"), 50);
    expect(pebbleLog).toMatch(
      /acme-rate-limit: refused a new order for headscale\.example\.com: 5 certificates in the last 10m0s, retry after \d{4}-/,
    );

    expect((await roamingCurl()).exitCode).not.toBe(0);
    expect((await lab.check("rate-limit")).ok).toBe(false);
    const check = await startTs(["check", "going-live", "--lab", lab.plan.lab]);
    expect(`${check.stdout}${check.stderr}`).toMatch(
      /The CA's production directory turns away every new order for headscale\.example\.com, refusing for \d+ s more/,
    );
    const skipped = Object.fromEntries(["key", "ts2021", "server_url", "derp"].map((c) => [c, "skip:tls"]));
    expect(await preflight()).toEqual({ code: 1, status: { ...healthy, tls: "fail", ...skipped } });
  });

  it("staging: a certificate at once, from a root no client trusts; the check still fails until production is back", async () => {
    const r = await lab.sh(
      "vps",
      `sed -i 's|^acme_url: .*|acme_url: https://acme.example.net:14002/dir|' /etc/headscale/config.yaml && headscale-service restart`,
    );
    expect(r.exitCode).toBe(0);
    const untrusted = await eventually(
      "roaming to be shown staging's certificate",
      async () => {
        const c = await roamingCurl();
        if (!c.stderr.includes("unable to get local issuer certificate")) throw new Error(`exit ${c.exitCode}: ${c.stdout}${c.stderr}`);
        return c;
      },
      { timeout: TIMEOUT.acme },
    );
    expect(untrusted.exitCode).not.toBe(0);
    const withStagingRoot = await roaming.sh(
      `curl -sk https://acme.example.net:15002/roots/0 >/tmp/staging-root.pem && curl -sS --max-time 10 --cacert /tmp/staging-root.pem https://${name}/health`,
    );
    expect(withStagingRoot.stdout).toContain("pass");
    expect((await lab.check("rate-limit")).ok).toBe(false);
    const check = await startTs(["check", "going-live", "--lab", lab.plan.lab]);
    expect(`${check.stdout}${check.stderr}`).toContain("orders from the staging directory (acme_url: https://acme.example.net:14002/dir)");
  });

  it("solve: the window reset, production's acme_url and an empty store: the certificate verifies, the check and preflight pass", async () => {
    await lab.solve("rate-limit");

    expect((await roamingCurl()).stdout).toContain("pass");
    expect(await limiterStatus()).toMatch(/^headscale\.example\.com: 1 of 5 certificates in the last 10m0s, 0 refused$/);
    expect((await lab.check("rate-limit")).ok).toBe(true);
    expect(await preflight()).toEqual({ code: 0, status: healthy });
  });
});
