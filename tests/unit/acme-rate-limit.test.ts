import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeLabTls } from "../../src/lab/tls.ts";
import { ROOT } from "../../src/paths.ts";
import { eventually } from "../support/eventually.ts";
import { freePort } from "../support/ports.ts";

/**
 * images/acme/acme-rate-limit.mjs, the going-live CA's rate limit, in front of a stand-in for
 * pebble's three endpoints it reads: a certificate counts when its order is finalized, and the
 * order past the limit gets Let's Encrypt's answer. (going-live-rate-limit.test.ts runs it in
 * front of the real pebble, with real ACME clients.)
 */
const tmp = mkdtempSync(join(tmpdir(), "wg3-rate-limit-"));
let limiter: ChildProcess;
let upstream: https.Server;
let port: number;

/** A JWS as ACME clients send it; the limiter reads only the payload's identifiers. */
const newOrder = (names: string[]) =>
  JSON.stringify({
    protected: "e30",
    payload: Buffer.from(JSON.stringify({ identifiers: names.map((value) => ({ type: "dns", value })) })).toString("base64url"),
    signature: "",
  });

function post(path: string, body: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: "127.0.0.1", port, method: "POST", path, headers: { host: `acme.test:${port}` }, rejectUnauthorized: false },
      (res) => {
        let data = "";
        res.on("data", (c) => (data += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

beforeAll(async () => {
  const pki = await makeLabTls("acme.test", ["127.0.0.1"], ["acme.test"]);
  writeFileSync(join(tmp, "api.crt"), pki.cert);
  writeFileSync(join(tmp, "api.key"), pki.key);
  let orders = 0;
  upstream = https.createServer({ cert: pki.cert, key: pki.key }, (req, res) => {
    req.resume();
    if (req.url === "/nonce-plz") return res.writeHead(200, { "Replay-Nonce": "fresh-nonce" }).end();
    if (req.url === "/order-plz") {
      orders++;
      return res.writeHead(201).end(JSON.stringify({ finalize: `https://${req.headers.host}/finalize-order/${orders}` }));
    }
    res.writeHead(200).end("{}");
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  port = await freePort();
  limiter = spawn("node", [join(ROOT, "images/acme/acme-rate-limit.mjs"), "serve"], {
    env: {
      ...process.env,
      LIMIT: "2",
      WINDOW: "600",
      LISTEN: `127.0.0.1:${port}`,
      UPSTREAM: `127.0.0.1:${(upstream.address() as AddressInfo).port}`,
      CERT: join(tmp, "api.crt"),
      KEY: join(tmp, "api.key"),
      ADMIN_SOCKET: join(tmp, "admin.sock"),
    },
    stdio: "ignore",
  });
  await eventually("the limiter to listen", () => post("/dir", ""));
});
afterAll(() => {
  limiter?.kill();
  upstream?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe("acme-rate-limit", () => {
  it("counts finalized orders per exact set of names, and refuses the next order as Let's Encrypt does", async () => {
    for (let i = 0; i < 2; i++) {
      const order = await post("/order-plz", newOrder(["b.test", "a.test"]));
      expect(order.status).toBe(201);
      expect((await post(new URL(JSON.parse(order.body).finalize).pathname, "{}")).status).toBe(200);
    }
    // Another set of names has its own count; an order never finalized counts nothing.
    expect((await post("/order-plz", newOrder(["a.test"]))).status).toBe(201);
    expect((await post("/order-plz", newOrder(["a.test"]))).status).toBe(201);

    const refused = await post("/order-plz", newOrder(["a.test", "b.test"]));
    expect(refused.status).toBe(429);
    expect(refused.headers["content-type"]).toBe("application/problem+json");
    expect(refused.headers["replay-nonce"]).toBe("fresh-nonce");
    // A date already past: Go's ACME client stops retrying at once (see the script).
    expect(Date.parse(String(refused.headers["retry-after"]))).toBeLessThan(Date.now() - 1000);
    const problem = JSON.parse(refused.body);
    expect(problem).toMatchObject({ type: "urn:ietf:params:acme:error:rateLimited", status: 429 });
    expect(problem.detail).toMatch(
      /^too many certificates \(2\) already issued for this exact set of identifiers in the last 10m0s, retry after \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: see https:\/\/letsencrypt\.org\/docs\/rate-limits\//,
    );
  });
});
