import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterAll, describe, expect, it } from "vitest";
import { AcmeCertificates, renewalTime, retryDelay } from "../../src/control/acme.ts";
import { ConfigError, LETS_ENCRYPT_DIRECTORY, parseConfig } from "../../src/control/config.ts";
import { ControlServer } from "../../src/control/server.ts";
import { makeLabTls } from "../../src/lab/tls.ts";
import { ROOT } from "../../src/paths.ts";
import { eventually } from "../support/eventually.ts";

/**
 * The builtin server's ACME support, configured with Headscale's keys. What needs a real CA
 * (an order, HTTP-01 through the cloud firewall) is proven by going-live-builtin.test.ts
 * against pebble; here: the config's refusals, the timing rules, the HTTP-01 responder, and a
 * restart that uses the stored certificate instead of ordering again.
 */

const root = mkdtempSync(join(tmpdir(), "wg3-acme-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

const BASE = ["server_url: https://headscale.test:443", "listen_addr: 127.0.0.1:0", "dns: { base_domain: tailnet.test }"];
const config = (...lines: string[]) => parseConfig([...BASE, ...lines].join("\n"), "cfg");
const refusal = (...lines: string[]) => {
  try {
    config(...lines);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error("the config was accepted");
};

describe("ACME config: Headscale's keys", () => {
  it("tls_letsencrypt_hostname turns it on, with Headscale's defaults for the rest", () => {
    const c = config("state_dir: /var/lib/x", "tls_letsencrypt_hostname: Headscale.Test");
    expect(c.acme).toEqual({
      hostname: "headscale.test",
      email: "",
      directoryUrl: LETS_ENCRYPT_DIRECTORY,
      httpListen: { host: "", port: 80 },
      cacheDir: "/var/lib/x/acme",
    });
    expect(config('tls_letsencrypt_hostname: ""').acme).toBeUndefined();
    expect(config().acme).toBeUndefined();
  });

  it("reads going-live's headscale.yaml as Headscale does, and its behind-Caddy config as plain TLS", () => {
    const render = (file: string) =>
      readFileSync(join(ROOT, "recipes/going-live", file), "utf8")
        .replaceAll("{{ vars.serverName }}", "headscale.example.com")
        .replaceAll("{{ vars.acmeName }}", "acme.example.net")
        .replaceAll("{{ vars.zone }}", "example.com")
        .replaceAll("{{ vars.baseDomain }}", "tailnet.example.org")
        .replaceAll("{{ nodes.vps.ip.internet }}", "10.66.0.20");
    const direct = parseConfig(render("headscale.yaml"));
    expect(direct.acme).toEqual({
      hostname: "headscale.example.com",
      email: "hope@example.com",
      directoryUrl: "https://acme.example.net:14000/dir",
      httpListen: { host: "", port: 80 },
      cacheDir: "/var/lib/headscale/cache",
    });
    expect(direct.listen).toEqual({ host: "0.0.0.0", port: 443 });
    const behindCaddy = parseConfig(render("headscale-behind-caddy.yaml"));
    expect(behindCaddy.acme).toBeUndefined();
    expect(behindCaddy.listen).toEqual({
      host: "127.0.0.1",
      port: 8080,
      tls: { cert: "/etc/headscale/internal.crt", key: "/etc/headscale/internal.key" },
    });
    expect(behindCaddy.adminSocket).toBe("/var/run/headscale/headscale.sock");
  });

  it("refuses a bad value with one sentence naming the key", () => {
    const cases: [string[], string][] = [
      [["tls_letsencrypt_hostname: 10.0.0.1"], 'cfg: tls_letsencrypt_hostname: want a DNS name like headscale.example.com, got "10.0.0.1"'],
      [
        ["tls_letsencrypt_hostname: bad_name.test"],
        'tls_letsencrypt_hostname: want a DNS name like headscale.example.com, got "bad_name.test"',
      ],
      [["tls_letsencrypt_hostname: h.test", "acme_url: http://ca.test/dir"], "acme_url: want the https URL of an ACME directory"],
      [
        ["tls_letsencrypt_hostname: h.test", "acme_email: hope"],
        'acme_email: want an address like you@example.com (or nothing), got "hope"',
      ],
      [["tls_letsencrypt_hostname: h.test", "tls_letsencrypt_challenge_type: TLS-ALPN-01"], "TLS-ALPN-01 is not supported by this server"],
      [
        ["tls_letsencrypt_hostname: h.test", "tls_letsencrypt_challenge_type: DNS-01"],
        'tls_letsencrypt_challenge_type: want HTTP-01, got "DNS-01"',
      ],
      [["tls_letsencrypt_hostname: h.test", "tls_letsencrypt_listen: http"], "tls_letsencrypt_listen: want [HOST]:PORT"],
      [["tls_letsencrypt_hostname: h.test", 'tls_letsencrypt_listen: ":99999"'], "tls_letsencrypt_listen: want [HOST]:PORT"],
      [
        ["tls_letsencrypt_hostname: h.test", "tls_cert_path: /c", "tls_key_path: /k"],
        "cfg: give tls_cert_path and tls_key_path, or tls_letsencrypt_hostname for a certificate by ACME, not both",
      ],
    ];
    for (const [lines, want] of cases) {
      const msg = refusal(...lines);
      expect(msg).toContain(want);
      expect(msg.split("\n")).toHaveLength(1);
    }
  });

  it("takes a listen address and a cache dir as given", () => {
    const c = config("tls_letsencrypt_hostname: h.test", 'tls_letsencrypt_listen: "0.0.0.0:8080"', "tls_letsencrypt_cache_dir: /c");
    expect(c.acme).toMatchObject({ httpListen: { host: "0.0.0.0", port: 8080 }, cacheDir: "/c" });
  });
});

describe("ACME timing", () => {
  it("retries after 10 s, doubling per failure, at most every 10 minutes", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map(retryDelay)).toEqual([10, 20, 40, 80, 160, 320, 600, 600].map((s) => s * 1000));
  });
  it("renews a third of the lifetime before expiry, and at most 30 days before", () => {
    const day = 86_400_000;
    const from = new Date(Date.UTC(2026, 0, 1));
    expect(renewalTime(from, new Date(from.getTime() + 90 * day))).toEqual(new Date(from.getTime() + 60 * day));
    expect(renewalTime(from, new Date(from.getTime() + 6 * day))).toEqual(new Date(from.getTime() + 4 * day));
    expect(renewalTime(from, new Date(from.getTime() + 5 * 365 * day))).toEqual(new Date(from.getTime() + (5 * 365 - 30) * day));
  });
});

describe("ACME server behaviour without a CA", () => {
  /** A server whose CA does not answer (nothing listens on port 1, unless `acmeUrl`); HTTP-01 on a free port. */
  async function start(cacheDir: string, acmeUrl = "https://127.0.0.1:1/dir") {
    const dir = join(root, `s${++n}`);
    const logs: string[] = [];
    const c = parseConfig(
      [
        ...BASE,
        `state_dir: ${dir}`,
        `unix_socket: ${join(dir, "admin.sock")}`,
        'derp: { server: { stun_listen_addr: "" } }',
        "tls_letsencrypt_hostname: headscale.test",
        `acme_url: ${acmeUrl}`,
        `tls_letsencrypt_cache_dir: ${cacheDir}`,
      ].join("\n"),
    );
    const ctl = new ControlServer({ ...c, acme: { ...c.acme!, httpListen: { host: "127.0.0.1", port: 0 } } }, (m) => logs.push(m));
    const ports = await ctl.start();
    return { ctl, logs, ...ports };
  }
  /** The certificate a TLS client asking for `servername` gets, or the handshake's error. */
  const peerCert = (port: number, servername: string) =>
    new Promise<string>((resolve) => {
      const s = tls.connect({ host: "127.0.0.1", port, servername, rejectUnauthorized: false }, () => {
        resolve(s.getPeerX509Certificate()?.subject ?? "none");
        s.destroy();
      });
      s.on("error", (e) => resolve(`error: ${e.message}`));
    });

  it("with no certificate: the order fails and says so, a handshake for the name fails, HTTP-01 answers only known tokens", async () => {
    const cacheDir = join(root, `cache${++n}`);
    const { ctl, logs, port, acmeHttpPort } = await start(cacheDir);
    try {
      expect(statSync(cacheDir).mode & 0o777).toBe(0o700);
      const line = await eventually("the failed order in the log", async () => {
        const l = logs.find((m) => m.startsWith("acme: no certificate for headscale.test"));
        if (!l) throw new Error(logs.join("\n"));
        return l;
      });
      expect(line).toMatch(
        /from https:\/\/127\.0\.0\.1:1\/dir: .*ECONNREFUSED.*; trying again in 10 s or when a TLS client asks for the name$/,
      );
      expect(await peerCert(port, "headscale.test")).toMatch(/^error: /);
      const challenge = await fetch(`http://127.0.0.1:${acmeHttpPort}/.well-known/acme-challenge/unknown`);
      expect(challenge.status).toBe(404);
      // fetch() may not set Host: the client asking for the name by its A record.
      const other = await new Promise<http.IncomingMessage>((resolve, reject) =>
        http
          .get({ port: acmeHttpPort, host: "127.0.0.1", path: "/health", headers: { host: "headscale.test" } }, resolve)
          .on("error", reject),
      );
      other.resume();
      expect(other.statusCode).toBe(302);
      expect(other.headers.location).toBe("https://headscale.test/health");
    } finally {
      await ctl.close();
    }
  });

  it("a CA's rate limit (429 rateLimited) fails the order at once with the CA's detail, not after acme-client's five retries", async () => {
    // A CA that refuses every signed request as Let's Encrypt refuses one past its limit.
    const detail = "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s";
    const pki = await makeLabTls("127.0.0.1", ["127.0.0.1"], []);
    const ca = https.createServer({ cert: pki.cert, key: pki.key }, (req, res) => {
      const base = `https://127.0.0.1:${(ca.address() as AddressInfo).port}`;
      if (req.url === "/dir")
        return res.end(JSON.stringify({ newNonce: `${base}/nonce`, newAccount: `${base}/account`, newOrder: `${base}/order` }));
      if (req.url === "/nonce") return res.writeHead(200, { "Replay-Nonce": "nonce" }).end();
      res.writeHead(429, { "Content-Type": "application/problem+json", "Retry-After": "3600", "Replay-Nonce": "nonce" });
      res.end(JSON.stringify({ type: "urn:ietf:params:acme:error:rateLimited", detail, status: 429 }));
    });
    await new Promise<void>((resolve) => ca.listen(0, "127.0.0.1", resolve));
    // The roots for the CA's API come from SSL_CERT_FILE, as on the VPS.
    writeFileSync(join(root, "ca-api.crt"), pki.caCert);
    process.env.SSL_CERT_FILE = join(root, "ca-api.crt");
    const started = start(join(root, `cache${++n}`), `https://127.0.0.1:${(ca.address() as AddressInfo).port}/dir`);
    delete process.env.SSL_CERT_FILE;
    const { ctl, logs } = await started;
    try {
      const line = await eventually(
        "the refused order in the log",
        async () => {
          const l = logs.find((m) => m.startsWith("acme: no certificate for headscale.test"));
          if (!l) throw new Error(logs.join("\n"));
          return l;
        },
        { timeout: 3000 },
      );
      expect(line).toContain(`: ${detail}; trying again in 10 s`);
    } finally {
      await ctl.close();
      ca.close();
    }
  });

  it("a restart with a good stored certificate serves it and orders nothing", async () => {
    const cacheDir = join(root, `cache${++n}`);
    mkdirSync(cacheDir, { recursive: true });
    const lab = await makeLabTls("headscale.test", [], ["headscale.test"]);
    writeFileSync(join(cacheDir, "headscale.test.crt"), lab.cert);
    writeFileSync(join(cacheDir, "headscale.test.key"), lab.key, { mode: 0o600 });
    const { ctl, logs, port } = await start(cacheDir);
    try {
      expect(await peerCert(port, "headscale.test")).toContain("CN=headscale.test");
      expect(logs.some((m) => m.startsWith("acme: using the stored certificate for headscale.test (expires "))).toBe(true);
      expect(logs.filter((m) => m.startsWith("acme: ordering"))).toEqual([]);
    } finally {
      await ctl.close();
    }
  });

  it("a stored certificate due for renewal is served while the renewal order fails", async () => {
    const cacheDir = join(root, `cache${++n}`);
    mkdirSync(cacheDir, { recursive: true });
    const lab = await makeLabTls("headscale.test", [], ["headscale.test"]);
    writeFileSync(join(cacheDir, "headscale.test.crt"), lab.cert);
    writeFileSync(join(cacheDir, "headscale.test.key"), lab.key, { mode: 0o600 });
    const logs: string[] = [];
    // 25 days on, a 30-day certificate is 5 days from expiry: past its renewal time (10 days before).
    const later = () => Date.now() + 25 * 86_400_000;
    const certs = new AcmeCertificates(
      {
        hostname: "headscale.test",
        email: "",
        directoryUrl: "https://127.0.0.1:1/dir",
        httpListen: { host: "127.0.0.1", port: 0 },
        cacheDir,
      },
      (m) => logs.push(m),
      undefined,
      later,
    );
    await certs.start();
    try {
      const failed = await eventually("the failed renewal in the log", async () => {
        const l = logs.find((m) => m.startsWith("acme: no certificate for headscale.test"));
        if (!l) throw new Error(logs.join("\n"));
        return l;
      });
      expect(logs[0]).toBe("acme: ordering a certificate for headscale.test from https://127.0.0.1:1/dir (renewal due)");
      expect(failed).toMatch(/; trying again in 10 s \(serving the current one meanwhile\)$/);
      const served = await new Promise<tls.SecureContext | undefined>((r) => certs.sniCallback("headscale.test", (_e, ctx) => r(ctx)));
      expect(served).toBeDefined();
    } finally {
      await certs.close();
    }
  });
});
