#!/usr/bin/env node
// acme-rate-limit: Let's Encrypt's best-known rate limit in front of pebble, which has none:
// at most LIMIT certificates for the same exact set of names per WINDOW seconds. A new order
// past it gets what Let's Encrypt sends (429, application/problem+json, rateLimited, its
// detail text). Everything else is passed to pebble as it came, Host header included, so
// pebble's URLs keep pointing here.
//   acme-rate-limit serve     the proxy (LISTEN -> UPSTREAM, TLS with CERT/KEY)
//   acme-rate-limit status    what it counted and refused, per set of names
//   acme-rate-limit reset     forget every count (the lab's stand-in for waiting a week)
import { readFileSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";

const env = (name, fallback) => process.env[name] ?? fallback;
const LIMIT = Number(env("LIMIT", "5"));
const WINDOW_S = Number(env("WINDOW", "600"));
const ADMIN_SOCKET = env("ADMIN_SOCKET", "/run/acme-rate-limit.sock");
const [listenHost, listenPort] = env("LISTEN", "0.0.0.0:14000").split(":");
const [upHost, upPort] = env("UPSTREAM", "127.0.0.1:14001").split(":");

/** Issue times (ms) per set of names, and the finalize URL path of each open order. */
const issued = new Map();
const orderNames = new Map();
const refused = new Map();

const log = (msg) => console.log(`acme-rate-limit: ${msg}`);

/** Go's duration format, as Let's Encrypt's detail prints its window ("168h0m0s"). */
function goDuration(s) {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${m}m${s % 60}s` : m ? `${m}m${s % 60}s` : `${s}s`;
}

function recent(names, now = Date.now()) {
  const times = (issued.get(names) ?? []).filter((t) => t > now - WINDOW_S * 1000);
  issued.set(names, times);
  return times;
}

/** The sorted names of a JWS-signed new-order request (its payload), or undefined. */
function namesOf(body) {
  try {
    const payload = JSON.parse(Buffer.from(JSON.parse(body).payload, "base64url").toString());
    return payload.identifiers.map((i) => i.value.toLowerCase()).sort().join(",");
  } catch {
    return undefined;
  }
}

function forward(req, body) {
  return new Promise((resolve, reject) => {
    const up = https.request(
      { host: upHost, port: upPort, method: req.method, path: req.url, headers: req.headers, rejectUnauthorized: false },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    up.on("error", reject);
    up.end(body);
  });
}

async function refuse(req, res, names, times) {
  const retryAt = new Date(times[0] + WINDOW_S * 1000);
  const when = retryAt.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  refused.set(names, (refused.get(names) ?? 0) + 1);
  log(`refused a new order for ${names}: ${times.length} certificates in the last ${goDuration(WINDOW_S)}, retry after ${when}`);
  // A fresh nonce, as every ACME answer carries one.
  const nonce = await forward({ method: "HEAD", url: "/nonce-plz", headers: { host: req.headers.host } }, undefined).catch(() => undefined);
  res.writeHead(429, {
    "Content-Type": "application/problem+json",
    // Let's Encrypt sends the seconds until the window lets this order through. Go's ACME
    // client (Headscale's autocert) retries a 429 after Retry-After, silently, until its
    // 5-minute deadline, while the TLS handshake that asked waits; a date already past
    // makes it stop at once (a negative wait ends its retries) and log the CA's answer. The
    // detail says the real time, as Let's Encrypt's does.
    "Retry-After": new Date(Math.floor(Date.now() / 1000) * 1000 - 2000).toUTCString(),
    ...(nonce?.headers["replay-nonce"] ? { "Replay-Nonce": nonce.headers["replay-nonce"] } : {}),
    Link: `<https://${req.headers.host}/dir>;rel="index"`,
  });
  res.end(
    JSON.stringify({
      type: "urn:ietf:params:acme:error:rateLimited",
      detail:
        `too many certificates (${times.length}) already issued for this exact set of identifiers in the last ` +
        `${goDuration(WINDOW_S)}, retry after ${when}: see https://letsencrypt.org/docs/rate-limits/#new-certificates-per-exact-set-of-identifiers`,
      status: 429,
    }),
  );
}

async function handle(req, res) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = Buffer.concat(chunks);
  const names = req.method === "POST" && req.url === "/order-plz" ? namesOf(body.toString()) : undefined;
  if (names) {
    const times = recent(names);
    if (times.length >= LIMIT) return refuse(req, res, names, times);
  }
  const up = await forward(req, body.length ? body : undefined);
  if (names && up.status === 201) {
    const finalize = JSON.parse(up.body.toString()).finalize;
    if (finalize) orderNames.set(new URL(finalize).pathname, names);
  }
  // A finalized order is an issued certificate: that is what the limit counts.
  const finalized = req.method === "POST" && orderNames.get(req.url);
  if (finalized && up.status === 200) {
    orderNames.delete(req.url);
    recent(finalized).push(Date.now());
    log(`certificate ${recent(finalized).length} of ${LIMIT} in ${goDuration(WINDOW_S)} for ${finalized}`);
  }
  res.writeHead(up.status, up.headers);
  res.end(up.body);
}

function status() {
  const now = Date.now();
  const lines = [...new Set([...issued.keys(), ...refused.keys()])].map((names) => {
    const times = recent(names, now);
    const left = times.length >= LIMIT ? `, refusing for ${Math.ceil((times[0] + WINDOW_S * 1000 - now) / 1000)} s more` : "";
    return `${names}: ${times.length} of ${LIMIT} certificates in the last ${goDuration(WINDOW_S)}, ${refused.get(names) ?? 0} refused${left}`;
  });
  return `${lines.join("\n") || `no certificates issued (limit: ${LIMIT} per exact set of names in ${goDuration(WINDOW_S)})`}\n`;
}

function serve() {
  const tls = { cert: readFileSync(env("CERT", "/etc/pebble/api.crt")), key: readFileSync(env("KEY", "/etc/pebble/api.key")) };
  https
    .createServer(tls, (req, res) =>
      handle(req, res).catch((e) => {
        log(`${req.method} ${req.url}: ${e.message}`);
        if (!res.headersSent) res.writeHead(502);
        res.end();
      }),
    )
    .listen(Number(listenPort), listenHost, () => log(`${LIMIT} certificates per exact set of names per ${goDuration(WINDOW_S)}, in front of ${upHost}:${upPort}`));
  rmSync(ADMIN_SOCKET, { force: true });
  http
    .createServer((req, res) => {
      if (req.method === "POST" && req.url === "/reset") {
        issued.clear();
        refused.clear();
        log("reset: every count forgotten");
        return res.end("reset: every count forgotten\n");
      }
      res.end(status());
    })
    .listen(ADMIN_SOCKET);
}

function admin(method, path) {
  const req = http.request({ socketPath: ADMIN_SOCKET, method, path }, (res) => res.pipe(process.stdout));
  req.on("error", (e) => {
    console.error(`acme-rate-limit: not running (${e.message})`);
    process.exit(1);
  });
  req.end();
}

const cmd = process.argv[2] ?? "serve";
if (cmd === "serve") serve();
else if (cmd === "status") admin("GET", "/status");
else if (cmd === "reset") admin("POST", "/reset");
else {
  console.error("usage: acme-rate-limit [serve|status|reset]");
  process.exit(2);
}
