import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkControl, checkDerp, serverUrlResult, type Target } from "../../src/cli/commands/preflight.ts";
import { parseConfig } from "../../src/control/config.ts";
import { advertisedKeyHex } from "../../src/control/derp-client.ts";
import { ControlServer } from "../../src/control/server.ts";
import { type LabTls, makeLabTls } from "../../src/lab/tls.ts";
import { freePort } from "../support/ports.ts";

/**
 * preflight's ts2021, server_url and /derp checks against the builtin control server on
 * loopback (a real Noise handshake, a real registration, a real DERP greeting): healthy, with
 * server_url naming another URL, and behind a TLS proxy that drops Upgrade and Connection.
 */

const NAME = "control.test";
const root = mkdtempSync(join(tmpdir(), "wg3-preflight-"));
let n = 0;
let pki: LabTls;
const servers: { close(): unknown }[] = [];

beforeAll(async () => {
  pki = await makeLabTls(NAME, [], [NAME]);
  writeFileSync(join(root, "server.crt"), pki.cert);
  writeFileSync(join(root, "server.key"), pki.key);
});
afterAll(async () => {
  for (const s of servers) await s.close();
  rmSync(root, { recursive: true, force: true });
});

/** The builtin server with its embedded DERP; TLS of its own unless `plain` (it sits behind a proxy then). */
async function control(serverUrl: (port: number) => string, plain = false): Promise<number> {
  const port = await freePort();
  const dir = join(root, `s${++n}`);
  const config = [
    `server_url: ${serverUrl(port)}`,
    `listen_addr: 127.0.0.1:${port}`,
    ...(plain ? [] : [`tls_cert_path: ${join(root, "server.crt")}`, `tls_key_path: ${join(root, "server.key")}`]),
    `state_dir: ${dir}`,
    `unix_socket: ${join(dir, "admin.sock")}`,
    "dns: { base_domain: tailnet.test }",
    'derp: { server: { enabled: true, region_id: 999, stun_listen_addr: "" } }',
  ].join("\n");
  const ctl = new ControlServer(parseConfig(config), () => {});
  await ctl.start();
  servers.push(ctl);
  return port;
}

/** A TLS reverse proxy to plain HTTP on `upstream` that, like a misconfigured one, forwards neither Upgrade nor Connection. */
async function upgradeDroppingProxy(upstream: number): Promise<number> {
  const forward = (req: http.IncomingMessage, reply: (res: http.IncomingMessage) => void) => {
    const { upgrade: _u, connection: _c, ...headers } = req.headers;
    const up = http.request({ host: "127.0.0.1", port: upstream, method: req.method, path: req.url, headers }, reply);
    up.on("error", () => {});
    req.pipe(up);
  };
  const proxy = https.createServer({ cert: pki.cert, key: pki.key }, (req, res) =>
    forward(req, (r) => {
      const { connection: _c, "keep-alive": _k, ...headers } = r.headers;
      res.writeHead(r.statusCode ?? 502, headers);
      r.pipe(res);
    }),
  );
  // A request that asks for an upgrade arrives here; it goes upstream as a plain request.
  proxy.on("upgrade", (req: http.IncomingMessage, socket: Duplex) =>
    forward(req, (r) => {
      const head = Object.entries(r.headers).map(([k, v]) => `${k}: ${String(v)}`);
      socket.write(`HTTP/1.1 ${r.statusCode} ${r.statusMessage}\r\n${head.join("\r\n")}\r\n\r\n`);
      r.pipe(socket);
    }),
  );
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  servers.push({ close: () => new Promise((r) => proxy.close(r)).then(() => proxy.closeAllConnections()) });
  return (proxy.address() as AddressInfo).port;
}

const target = (port: number): Target => ({ url: new URL(`https://${NAME}:${port}`), name: NAME, port, ca: pki.caCert });
const statuses = (results: { check: string; status: string }[]) => Object.fromEntries(results.map((r) => [r.check, r.status]));

describe("preflight against the builtin control server", () => {
  it("healthy: ts2021, server_url and /derp pass, and the relay's key is the one it advertises", async () => {
    const port = await control((p) => `https://${NAME}:${p}`);
    const t = target(port);
    const [ts2021, serverUrl] = await checkControl(t, "127.0.0.1");
    const derp = await checkDerp(t, "127.0.0.1");
    expect(statuses([ts2021, serverUrl, derp])).toEqual({ ts2021: "ok", server_url: "ok", derp: "ok" });
    expect(serverUrl.detail).toBe(`the server hands out login links at https://${NAME}:${port}`);
    expect(derp.detail).toMatch(/^\/derp upgrades to DERP \(version 2, relay key [0-9a-f]{8}\.\.\.\)$/);
  });

  it("server_url naming another URL: only server_url fails, and says what the server calls itself", async () => {
    const port = await control(() => "http://127.0.0.1:8080");
    const t = target(port);
    const [ts2021, serverUrl] = await checkControl(t, "127.0.0.1");
    const derp = await checkDerp(t, "127.0.0.1");
    expect(statuses([ts2021, serverUrl, derp])).toEqual({ ts2021: "ok", server_url: "fail", derp: "ok" });
    expect(serverUrl.detail).toBe(
      `the server calls itself http://127.0.0.1:8080 (its login links go to http://127.0.0.1:8080/register/...), not https://${NAME}:${port}`,
    );
    expect(serverUrl.fix).toContain(`server_url: https://${NAME}:${port}`);
  });

  it("behind a proxy that drops Upgrade and Connection: ts2021 and /derp fail, server_url cannot be judged", async () => {
    const port = await freePort();
    const proxied = await upgradeDroppingProxy(await control(() => `https://${NAME}:${port}`, true));
    const t = target(proxied);
    const [ts2021, serverUrl] = await checkControl(t, "127.0.0.1");
    const derp = await checkDerp(t, "127.0.0.1");
    expect(statuses([ts2021, serverUrl, derp])).toEqual({ ts2021: "fail", server_url: "skip", derp: "fail" });
    expect(ts2021.detail).toMatch(/^ts2021 upgrade refused: HTTP\/1\.1 [45]\d\d /);
    expect(derp.detail).toBe("DERP upgrade refused: HTTP/1.1 426 Upgrade Required: DERP requires connection upgrade");
    expect(derp.fix).toMatch(/pass Upgrade and Connection for \/derp/);
  });
});

describe("the Derp-Public-Key header", () => {
  it("is read bare (Tailscale's derper) or typed (Headscale's embedded DERP writes nodekey:<hex>)", () => {
    const hex = "ab".repeat(32);
    expect(advertisedKeyHex({ "derp-public-key": hex })).toBe(hex);
    expect(advertisedKeyHex({ "derp-public-key": `nodekey:${hex.toUpperCase()}` })).toBe(hex);
    expect(advertisedKeyHex({})).toBeUndefined();
  });
});

describe("server_url from a login link", () => {
  const asked = new URL("https://headscale.example.com");
  it("the default port written out is the same origin", () => {
    expect(serverUrlResult(asked, "https://headscale.example.com:443/register/abc").status).toBe("ok");
  });
  it("another scheme, host or port fails", () => {
    for (const link of [
      "http://headscale.example.com/register/a",
      "https://vpn.example.com/register/a",
      "https://headscale.example.com:8443/register/a",
    ])
      expect(serverUrlResult(asked, link).status).toBe("fail");
  });
  it("no login link in the answer is a warning, not a verdict", () => {
    expect(serverUrlResult(asked, "").status).toBe("warn");
    expect(serverUrlResult(asked, undefined).status).toBe("warn");
  });
});
