import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TailscaleInContainer } from "../../src/nodes/tailscale.ts";
import { eventually } from "../support/eventually.ts";
import { type GoingLive, HEALTHY, preflight as preflightOf, startGoingLive, stopGoingLive, typoServerUrl } from "../support/going-live.ts";
import type { LabHandle } from "../support/lab-handle.ts";
import { TIMEOUT } from "../support/timeouts.ts";

// going-live with --control builtin (layout headscale): the builtin server reads Headscale's
// config.yaml and gets its certificate from the real pebble over ACME (acme-client), HTTP-01
// on port 80 through the cloud firewall. The attendee's order, each check failing first for
// the real symptom; going-live.test.ts does the same with Headscale.
const controls = (process.env.WG3_CONTROLS ?? "headscale,builtin").split(",");

describe.skipIf(!controls.includes("builtin"))(
  "going-live --control builtin: the builtin server's own ACME certificate from pebble",
  () => {
    let lab: LabHandle;
    let roaming: TailscaleInContainer;
    let name: string;
    let vpsIp: string;
    let g: GoingLive;
    const healthy = HEALTHY;
    const cacheDir = "/var/lib/headscale/cache";
    /** preflight's exit code and status per check (its details left out, for exact comparisons). */
    const preflight = async (trust?: string[]) => {
      const { code, status } = await preflightOf(g, trust);
      return { code, status };
    };
    /** The VPS's log lines from the builtin server's ACME client. */
    const acmeLog = async () => (await lab.engine.logTail(lab.container("vps"), 2000)).split("\n").filter((l) => / acme: /.test(l));
    /** The serial of the certificate roaming is shown for the name. */
    const servedSerial = async () =>
      (
        await roaming.sh(`openssl s_client -connect ${name}:443 -servername ${name} </dev/null 2>/dev/null | openssl x509 -noout -serial`)
      ).stdout.trim();

    beforeAll(async () => {
      g = await startGoingLive("live-builtin", { control: "builtin" });
      ({ lab, roaming, name, vpsIp } = g);
    });
    afterAll(() => stopGoingLive(g));

    it("the VPS runs the builtin server with Headscale's config file and commands", async () => {
      expect((await lab.sh("vps", "node /opt/wg3-control/control.mjs cli version")).exitCode).toBe(0);
      expect((await lab.sh("vps", "headscale health")).exitCode).toBe(0);
      expect((await lab.sh("vps", "grep -c '^tls_letsencrypt_hostname: ' /etc/headscale/config.yaml")).stdout.trim()).toBe("1");
    });

    it("a-record: the name is NXDOMAIN until the A record is added, then resolves to the VPS", async () => {
      expect((await roaming.sh(`dig +time=2 +tries=1 ${name}`)).stdout).toContain("status: NXDOMAIN");
      expect((await lab.check("a-record")).ok).toBe(false);
      expect((await preflight()).status.dns).toBe("fail");

      await lab.solve("a-record");

      expect((await roaming.sh(`nslookup ${name}`)).stdout).toContain(`Address: ${vpsIp}`);
      expect((await lab.check("a-record")).ok).toBe(true);
    });

    it("certificate, before: with the firewall closed the CA cannot reach port 80, and the server's log says so and when it tries again", async () => {
      expect((await lab.check("certificate")).ok).toBe(false);
      const before = (await acmeLog()).length;
      // Only the VPS itself gets through its firewall: a TLS connection with the name orders now.
      await lab.sh("vps", `(curl -sk --max-time 30 --resolve ${name}:443:127.0.0.1 https://${name}/health >/tmp/first-tls.log 2>&1 &)`);
      const failed = await eventually(
        "the builtin server's log to report an order the CA could not validate",
        async () => {
          const lines = (await acmeLog()).slice(before);
          // The CA's answer once it found the name and tried port 80 (orders before failed sooner: no resolver yet, no A record).
          const line = lines.find(
            (l) => l.includes(`acme: no certificate for ${name} from https://`) && l.includes("/.well-known/acme-challenge/"),
          );
          if (!line) throw new Error(`acme log since: ${lines.join("\n")}`);
          return line;
        },
        { timeout: TIMEOUT.acme },
      );
      console.log(`going-live-builtin: ${failed}`);
      expect(failed).toMatch(/; trying again in \d+ s or when a TLS client asks for the name$/);
      expect((await lab.check("certificate")).ok).toBe(false);
    });

    it("firewall: 443/tcp and 80/tcp time out until the chapter's rules are added", async () => {
      expect((await roaming.sh(`nc -z -w 3 ${vpsIp} 80`)).exitCode).not.toBe(0);
      expect((await lab.check("firewall")).ok).toBe(false);

      await lab.solve("firewall");

      expect((await roaming.sh(`nc -z -w 3 ${vpsIp} 443`)).exitCode).toBe(0);
      expect((await roaming.sh(`nc -z -w 3 ${vpsIp} 80`)).exitCode).toBe(0);
      expect((await lab.check("firewall")).ok).toBe(true);
    });

    it("certificate: once the CA gets through, the server holds a pebble certificate for the name, stored in its cache dir", async () => {
      const t0 = Date.now();
      await lab.solve("certificate");
      console.log(`going-live-builtin: certificate issued ${((Date.now() - t0) / 1000).toFixed(1)} s after the firewall opened`);
      const sClient = (trust: string) =>
        roaming.sh(`openssl s_client -connect ${name}:443 -servername ${name} ${trust} -no-CApath -no-CAstore </dev/null 2>/dev/null`);
      const withRoot = await sClient("-CAfile /usr/local/share/ca-certificates/pebble-root.crt");
      expect(withRoot.stdout).toMatch(/issuer=.*Pebble Intermediate CA/);
      expect(withRoot.stdout).toContain("Verify return code: 0 (ok)");
      expect((await sClient("-no-CAfile")).stdout).toMatch(/Verify return code: [1-9]/);
      expect((await lab.check("certificate")).ok).toBe(true);
      expect((await acmeLog()).some((l) => l.includes(`acme: got a certificate for ${name}, expires `))).toBe(true);
      const modes = await lab.sh(
        "vps",
        `stat -c '%a %n' ${cacheDir} ${cacheDir}/${name}.key ${cacheDir}/${name}.crt ${cacheDir}/account.key`,
      );
      expect(modes.stdout.trim().split("\n")).toEqual([
        `700 ${cacheDir}`,
        `600 ${cacheDir}/${name}.key`,
        `600 ${cacheDir}/${name}.crt`,
        `600 ${cacheDir}/account.key`,
      ]);
      // Port 80 is the HTTP-01 listener; anything else there is sent to https.
      const http = await roaming.sh(`curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://${name}/health`);
      expect(http.stdout).toBe(`302 https://${name}/health`);
    });

    it("a restart serves the stored certificate without ordering; without the store it orders a new one", async () => {
      const serial = await servedSerial();
      expect(serial).toMatch(/^serial=[0-9A-F]+$/);
      const orders = async () => (await acmeLog()).filter((l) => l.includes("acme: ordering a certificate")).length;
      const ordered = await orders();

      expect((await lab.sh("vps", "headscale-service restart")).exitCode).toBe(0);
      expect(await servedSerial()).toBe(serial);
      expect(await orders()).toBe(ordered);
      expect((await acmeLog()).at(-1)).toContain(`acme: using the stored certificate for ${name} (expires `);

      // The negative control: the same restart with the store emptied orders again.
      expect((await lab.sh("vps", `rm -f ${cacheDir}/${name}.crt ${cacheDir}/${name}.key && headscale-service restart`)).exitCode).toBe(0);
      await eventually(
        "a new certificate after the restart without the stored one",
        async () => {
          const now = await servedSerial();
          if (!/^serial=/.test(now) || now === serial) throw new Error(`served: ${now || "nothing"}`);
          return now;
        },
        { timeout: TIMEOUT.acme },
      );
      expect(await orders()).toBeGreaterThan(ordered);
    });

    it("join: no tailnet path before; after both clients join by name, roaming reaches home and the home webserver", async () => {
      const web = lab.ip("webserver", "home");
      expect((await roaming.curl(`http://${web}/`)).stdout).not.toContain("Hello from Caddy!");
      expect((await lab.check("join")).ok).toBe(false);

      await lab.solve("join");

      expect(await eventually("roaming's ping home over the tailnet", () => roaming.ping("home"), { timeout: TIMEOUT.converge })).toBe(
        true,
      );
      expect((await lab.check("join")).ok).toBe(true);
    });

    it("stun: the builtin server's STUN on 3478/udp is dropped until opened", async () => {
      expect((await roaming.sh("tailscale netcheck 2>&1")).stdout).toContain("UDP: false");
      expect((await lab.check("stun")).ok).toBe(false);

      await lab.solve("stun");

      expect((await roaming.sh("tailscale netcheck 2>&1")).stdout).toContain("UDP: true");
      expect((await lab.check("stun")).ok).toBe(true);
    });

    it("preflight: every check passes on the healthy builtin server; untrusted, only tls fails", async () => {
      expect(await preflight()).toEqual({ code: 0, status: healthy });
      expect(await preflight([])).toEqual({
        code: 1,
        status: { ...healthy, tls: "fail", key: "skip", ts2021: "skip", server_url: "skip", derp: "skip" },
      });
    });

    it("server-url: a typo'd server_url puts the typo in the DERP map, which roaming cannot connect to; only preflight's server_url fails", async () => {
      // The client's own view: the DERP map it was given names the typo, and the relay there refuses it.
      const { typo, derp } = await typoServerUrl(g);
      expect(derp).toContain(`Error upgrading connection to node \\"${typo}\\"`);
      expect(derp).toContain("to TLS over IPv4");
      console.log(`going-live-builtin: tailscale debug derp with server_url ${typo}: ${derp.replace(/\s+/g, " ").slice(0, 600)}`);
      expect((await lab.check("server-url")).ok).toBe(false);
      expect(await preflight()).toMatchObject({ code: 1, status: { ...healthy, server_url: "fail" } });

      await lab.solve("server-url");

      expect((await lab.check("server-url")).ok).toBe(true);
      expect(await preflight()).toMatchObject({ code: 0, status: healthy });
    });
  },
);
