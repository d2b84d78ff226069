import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TailscaleInContainer } from "../../src/nodes/tailscale.ts";
import { eventually } from "../support/eventually.ts";
import { type GoingLive, HEALTHY, preflight as preflightOf, startGoingLive, stopGoingLive, typoServerUrl } from "../support/going-live.ts";
import type { LabHandle } from "../support/lab-handle.ts";
import { startTs } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

// The going-live recipe in the order an attendee goes: A record, firewall, certificate, join,
// then the STUN port the chapter forgets.
// Each step's check fails first for the real symptom (NXDOMAIN, a timed-out port, an ACME
// failure in Headscale's log, no tailnet path), then passes after its solve.
describe("going-live: Headscale on a VPS, a pebble certificate, clients joining by name", () => {
  let lab: LabHandle;
  let roaming: TailscaleInContainer;
  let name: string;
  let vpsIp: string;
  let g: GoingLive;
  const healthy = HEALTHY;
  /** preflight's exit code and status per check (its details left out, for exact comparisons). */
  const preflight = async (trust?: string[]) => {
    const { code, status } = await preflightOf(g, trust);
    return { code, status };
  };

  /** The stun check's own probe (a binding request as tailscaled sends it), aimed at this lab's VPS: does STUN answer? */
  const stunAnswers = async () => {
    const probe = lab.recipe.exercises
      .find((e) => e.id === "stun")!
      .check.at(-1)!
      .run!.replace("{{ nodes.vps.ip.internet }}", vpsIp);
    return /^ 01 01 /.test((await roaming.sh(probe)).stdout);
  };

  beforeAll(async () => {
    g = await startGoingLive("live");
    ({ lab, roaming, name, vpsIp } = g);
  });
  afterAll(() => stopGoingLive(g));

  it("a-record: the name is NXDOMAIN at the registrar until the A record is added, then resolves to the VPS", async () => {
    expect((await roaming.sh(`dig +time=2 +tries=1 ${name}`)).stdout).toContain("status: NXDOMAIN");
    expect((await lab.check("a-record")).ok).toBe(false);
    expect(await preflight()).toEqual({
      code: 1,
      status: {
        dns: "fail",
        ...{ https: "skip", http: "skip", tls: "skip", key: "skip", ts2021: "skip", server_url: "skip", derp: "skip", stun: "skip" },
      },
    });

    await lab.solve("a-record");

    const answer = await roaming.sh(`nslookup ${name}`);
    expect(answer.exitCode).toBe(0);
    expect(answer.stdout).toContain(`Address: ${vpsIp}`);
    expect((await lab.check("a-record")).ok).toBe(true);
  });

  it("certificate, before: with the firewall closed the CA reaches neither 443 nor 80, and Headscale's log says so", async () => {
    expect((await lab.check("certificate")).ok).toBe(false);
    // Only the VPS itself gets through its firewall: its own first TLS connection with the name
    // makes Headscale order the certificate, which the CA cannot validate from outside.
    await lab.sh("vps", `(curl -sk --max-time 90 --resolve ${name}:443:127.0.0.1 https://${name}/health >/tmp/first-tls.log 2>&1 &)`);
    const log = await eventually(
      "Headscale's log to report the failed ACME order",
      async () => {
        const text = await lab.engine.logTail(lab.container("vps"), 200);
        if (!text.includes(`for domain "${name}": no viable challenge type found`)) throw new Error(`log tail: ${text.slice(-300)}`);
        return text;
      },
      { timeout: TIMEOUT.acme },
    );
    expect(log).toContain("acme/autocert: unable to satisfy");
    expect((await lab.check("certificate")).ok).toBe(false);
  });

  it("firewall: 443/tcp and 80/tcp time out until the chapter's rules are added; 3478/udp stays closed", async () => {
    expect((await roaming.sh(`nc -z -w 3 ${vpsIp} 443`)).exitCode).not.toBe(0);
    expect((await roaming.sh(`nc -z -w 3 ${vpsIp} 80`)).exitCode).not.toBe(0);
    expect((await lab.check("firewall")).ok).toBe(false);

    await lab.solve("firewall");

    expect((await roaming.sh(`nc -z -w 3 ${vpsIp} 443`)).exitCode).toBe(0);
    expect((await roaming.sh(`nc -z -w 3 ${vpsIp} 80`)).exitCode).toBe(0);
    expect(await stunAnswers()).toBe(false);
    expect((await lab.check("firewall")).ok).toBe(true);
  });

  it("certificate: once the CA gets through, Headscale holds a certificate from pebble's per-run root for the name", async () => {
    const t0 = Date.now();
    await eventually(
      "roaming's curl https://NAME/health to verify",
      async () => {
        const r = await roaming.sh(`curl -sS --max-time 10 https://${name}/health`);
        if (!r.stdout.includes("pass")) throw new Error(`exit ${r.exitCode}: ${r.stdout}${r.stderr}`);
        return true;
      },
      { timeout: TIMEOUT.acme },
    );
    console.log(`going-live: certificate issued ${((Date.now() - t0) / 1000).toFixed(1)} s after the firewall opened`);
    // The trust anchor is this run's pebble root, and only it: without it the chain does not verify.
    const sClient = (trust: string) =>
      roaming.sh(`openssl s_client -connect ${name}:443 -servername ${name} ${trust} -no-CApath -no-CAstore </dev/null 2>/dev/null`);
    const withRoot = await sClient("-CAfile /usr/local/share/ca-certificates/pebble-root.crt");
    expect(withRoot.stdout).toMatch(/issuer=.*Pebble Intermediate CA/);
    expect(withRoot.stdout).toContain("Verify return code: 0 (ok)");
    const withoutRoot = await sClient("-no-CAfile");
    expect(withoutRoot.stdout).toMatch(/Verify return code: [1-9]/);
    expect((await lab.check("certificate")).ok).toBe(true);
  });

  it("join: no tailnet path before; after both clients join by name, roaming reaches home and the home webserver", async () => {
    const web = lab.ip("webserver", "home");
    expect((await roaming.curl(`http://${web}/`)).stdout).not.toContain("Hello from Caddy!");
    expect((await lab.check("join")).ok).toBe(false);

    await lab.solve("join");

    const status = await roaming.status();
    expect(Object.values(status.Peer ?? {}).map((p) => p.HostName)).toContain("home");
    expect(await roaming.ping("home")).toBe(true);
    const page = await eventually("the home webserver through the tailnet", async () => {
      const r = await roaming.curl(`http://${web}/`);
      if (!r.stdout.includes("Hello from Caddy!")) throw new Error(`exit ${r.exitCode}: ${r.stdout}`);
      return r.stdout;
    });
    expect(page).toContain("Hello from Caddy!");
    expect((await lab.check("join")).ok).toBe(true);
  });

  it("stun: with 3478/udp closed the clients work but netcheck finds no UDP; opened, STUN answers", async () => {
    expect(await roaming.ping("home")).toBe(true);
    expect((await roaming.sh("tailscale netcheck 2>&1")).stdout).toContain("UDP: false");
    expect(await stunAnswers()).toBe(false);
    expect((await lab.check("stun")).ok).toBe(false);

    await lab.solve("stun");

    expect((await roaming.sh("tailscale netcheck 2>&1")).stdout).toContain("UDP: true");
    expect(await stunAnswers()).toBe(true);
    expect((await lab.check("stun")).ok).toBe(true);
  });

  it("preflight: every check passes on the healthy server; untrusted, only tls fails; server_url elsewhere, only server_url; 3478/udp dropped, only stun", async () => {
    expect(await preflight()).toEqual({ code: 0, status: healthy });
    // This host's own roots do not include the run's pebble root: the certificate is untrusted.
    expect(await preflight([])).toEqual({
      code: 1,
      status: { ...healthy, tls: "fail", key: "skip", ts2021: "skip", server_url: "skip", derp: "skip" },
    });

    // Config-example's default left in: the server hands out login links (and its DERP region) at an address no client can use.
    const setServerUrl = (url: string) =>
      lab.sh("vps", `sed -i 's|^server_url: .*|server_url: ${url}|' /etc/headscale/config.yaml && headscale-service restart`);
    expect((await setServerUrl("http://127.0.0.1:8080")).exitCode).toBe(0);
    const r = await startTs(["preflight", `https://${name}`, "--dns", lab.ip("registrar", "internet"), "--ca", g.pebbleRoot]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      /^fail server_url the server calls itself http:\/\/127\.0\.0\.1:8080 .*, not https:\/\/headscale\.example\.com$/m,
    );
    expect(await preflight()).toEqual({ code: 1, status: { ...healthy, server_url: "fail" } });
    expect((await setServerUrl(`https://${name}:443`)).exitCode).toBe(0);
    expect(await preflight()).toEqual({ code: 0, status: healthy });

    await lab.sh("vps", "nft insert rule inet cloud_firewall inbound udp dport 3478 drop");

    expect(await preflight()).toEqual({ code: 1, status: { ...healthy, stun: "fail" } });
  });

  it("server-url: a typo'd server_url lets clients join but hands them a DERP relay at the typo, which they cannot connect to; only preflight's server_url fails", async () => {
    // The previous test's dropped 3478/udp goes, so that server_url is the only thing wrong.
    await lab.sh(
      "vps",
      "nft -a list chain inet cloud_firewall inbound | awk '/udp dport 3478 drop/ { print $NF }' | xargs -r -n1 nft delete rule inet cloud_firewall inbound handle",
    );
    // The client's own view: the DERP map it was given names the typo, and the relay there refuses it.
    const { typo, derp } = await typoServerUrl(g);
    expect(derp).toContain(`Error upgrading connection to node \\"${typo}\\"`);
    expect(derp).toContain("to TLS over IPv4");
    console.log(`going-live: tailscale debug derp with server_url ${typo}: ${derp.replace(/\s+/g, " ").slice(0, 600)}`);
    expect((await lab.check("server-url")).ok).toBe(false);
    // The clients still work: they talk to the URL they were given, and reach each other directly.
    // (The restart drops their control connections for a moment: wait for both back online.)
    await eventually(
      "join's check to pass again after the restart",
      async () => {
        const r = await lab.check("join");
        if (!r.ok) throw new Error(r.detail ?? "join not passing");
        return r;
      },
      { timeout: TIMEOUT.converge },
    );
    const pf = await startTs(["preflight", `https://${name}`, "--dns", lab.ip("registrar", "internet"), "--ca", g.pebbleRoot]);
    expect(pf.stdout).toMatch(new RegExp(`^fail server_url +the server calls itself https://${typo.replace(/\./g, "\\.")} `, "m"));
    expect(await preflight()).toEqual({ code: 1, status: { ...healthy, server_url: "fail" } });

    await lab.solve("server-url");

    expect((await roaming.sh("tailscale debug derp headscale 2>&1")).stdout).not.toContain("over IPv4");
    expect((await lab.check("server-url")).ok).toBe(true);
    expect(await preflight()).toEqual({ code: 0, status: healthy });
  });

  it("wrong A record: the name answers an address with no server; clients and the CA go there, a-record's check and its hint say so, preflight names dns and skips the rest", async () => {
    const wrongIp = vpsIp.replace(/\.\d+$/, ".21");
    await lab.sh("registrar", `echo '${wrongIp} ${name}' > /etc/dns/records.d/headscale`);
    await eventually("the registrar to answer the wrong address", async () => {
      const a = (await roaming.sh(`dig +short +time=1 +tries=1 ${name}`)).stdout.trim();
      if (a !== wrongIp) throw new Error(`answers ${a}`);
      return a;
    });

    expect((await roaming.sh(`nslookup ${name}`)).stdout).toContain(`Address: ${wrongIp}`);
    const curl = await roaming.sh(`curl -sS --max-time 10 https://${name}/health`);
    expect(curl.exitCode).not.toBe(0);
    expect(curl.stderr).toMatch(/Failed to connect|timed out/);
    // The CA resolves through the same registrar: its HTTP-01 request would go to the wrong address.
    const ca = await lab.sh("pebble", `curl -sSv --max-time 10 http://${name}/.well-known/acme-challenge/probe`);
    expect(ca.exitCode).not.toBe(0);
    expect(ca.stderr).toContain(`Trying ${wrongIp}:80`);
    console.log(`going-live: wrong A record: roaming's curl: ${curl.stderr.trim()}; the CA's: ${ca.stderr.trim().split("\n").at(-1)}`);

    expect((await lab.check("a-record")).ok).toBe(false);
    const check = await startTs(["check", "going-live", "--lab", lab.plan.lab]);
    expect(`${check.stdout}${check.stderr}`).toContain(`${name} answers ${wrongIp}, not the VPS's ${vpsIp}`);
    const pf = await preflight();
    expect(pf).toEqual({
      code: 1,
      status: {
        dns: "fail",
        ...Object.fromEntries(
          Object.keys(healthy)
            .filter((c) => c !== "dns")
            .map((c) => [c, "skip"]),
        ),
      },
    });

    await lab.solve("a-record");

    expect((await roaming.sh(`curl -sS --max-time 10 https://${name}/health`)).stdout).toContain("pass");
    expect((await lab.check("a-record")).ok).toBe(true);
    expect(await preflight()).toEqual({ code: 0, status: healthy });
  });
});
