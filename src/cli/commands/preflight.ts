import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { Resolver } from "node:dns/promises";
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { crc32 } from "node:zlib";
import { ControlClient, fetchServerKey } from "../../control/client.ts";
import { derpGreeting } from "../../control/derp-client.ts";
import { formatKey, newKeyPair } from "../../control/keys.ts";
import { errorMessage, UserError } from "../../errors.ts";
import { type Command, out } from "../command.ts";

/**
 * Checks a control server from the outside the way a Tailscale client will use it: DNS, the
 * ports, the certificate, /key, the ts2021 upgrade, the URL the server gives out, the DERP
 * upgrade and STUN. Needs no container engine, so it
 * runs from a laptop against a real VPS as well as against the going-live lab.
 */

type Status = "ok" | "warn" | "fail" | "skip";
interface Result {
  check: string;
  status: Status;
  detail: string;
  /** One sentence: what to change when the check does not pass. */
  fix?: string;
  /** For a skip: the failing check it rests on, which is the one to fix first. */
  because?: string;
}
export interface Target {
  url: URL;
  name: string;
  port: number;
  /** PEM roots to trust besides the system's (a staging or lab CA). */
  ca?: string;
  dns?: string;
}

const CONNECT_TIMEOUT_MS = 5000;
const STUN_PORT = 3478;
const STUN_MAGIC = 0x2112a442;

const FIX = {
  dns: (n: string) =>
    `Add an A record for ${n} pointing at the server's public IPv4 address at your registrar (check: nslookup ${n} 1.1.1.1).`,
  dnsWrong: (n: string) =>
    `Point the A record for ${n} at the server's current public IPv4 address at your registrar (an old VPS's, or a typo, answers nothing), then check: nslookup ${n} 1.1.1.1.`,
  https: () => "Open 443/tcp in the cloud firewall and make Headscale (listen_addr 0.0.0.0:443) or your proxy listen on it.",
  http: () => "Open 80/tcp if the certificate comes by HTTP-01 through a proxy; Headscale's own ACME can use TLS-ALPN-01 on 443 instead.",
  tls: (n: string) =>
    `Give ${n} a certificate from a CA clients trust: tls_letsencrypt_hostname: ${n} (the first HTTPS request triggers it; the server's log names an ACME error) or your proxy's.`,
  key: () => "Proxy every path to Headscale (GET /key must reach it) and check that it runs.",
  ts2021: () =>
    "Make your reverse proxy pass Upgrade and Connection to Headscale over HTTP/1.1 (Caddy to an https upstream: transport http { versions 1.1 }; nginx: proxy_http_version 1.1 and proxy_set_header for both).",
  serverUrl: (url: URL) =>
    `Set server_url: ${url.origin} in Headscale's config.yaml and restart it: login links and the embedded DERP's address are made from it.`,
  derp: () =>
    "Make your reverse proxy pass Upgrade and Connection for /derp as for /ts2021 (the embedded DERP relay needs derp.server.enabled: true).",
  stun: () =>
    "Open 3478/udp in the cloud firewall: Headscale's embedded STUN (derp.server.stun_listen_addr) lets clients find direct paths.",
};

export const preflightCommand: Command = {
  name: "preflight",
  usage: "preflight https://NAME [--dns IP] [--ca FILE] [--json]",
  summary: "check a real control server from outside: DNS, ports, certificate, /key, ts2021, server_url, /derp, STUN",
  details:
    "Each check prints one line, and how to fix it when it fails; exit 1 when any fails. --dns asks that DNS server instead of this machine's resolver; --ca trusts an extra root (a staging or lab CA) besides the system's.",
  flags: [
    { name: "dns", value: "IP", help: "resolve the name with this DNS server" },
    { name: "ca", value: "FILE", help: "also trust the root certificate(s) in this PEM file" },
    { name: "json", help: "machine-readable output" },
  ],
  async run(p) {
    const target = targetOf(p.positionals[0], p.flags.dns, p.flags.ca);
    const results = await preflight(target);
    if (p.flags.json) out(JSON.stringify(results, null, 2));
    else for (const r of results) printResult(r);
    return results.some((r) => r.status === "fail") ? 1 : 0;
  },
};

function targetOf(arg: string | undefined, dns: unknown, caFile: unknown): Target {
  let url: URL;
  try {
    url = new URL(arg ?? "");
  } catch {
    throw new UserError("preflight needs the control server's URL, e.g. ./start.ts preflight https://headscale.example.com.", 2);
  }
  if (url.protocol !== "https:") throw new UserError(`preflight checks an https:// URL (clients need TLS), not ${url.protocol}//.`, 2);
  if (dns !== undefined && net.isIP(String(dns)) === 0)
    throw new UserError(`--dns wants a DNS server's IP address, not "${String(dns)}".`, 2);
  return {
    url,
    name: url.hostname,
    port: Number(url.port || 443),
    ca: caFile === undefined ? undefined : readCa(String(caFile)),
    dns: dns as string,
  };
}

function readCa(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (e) {
    throw new UserError(`--ca ${file} cannot be read: ${errorMessage(e)}.`, 2);
  }
  if (!pem.includes("BEGIN CERTIFICATE")) throw new UserError(`--ca ${file} holds no PEM certificate.`, 2);
  return pem;
}

function printResult(r: Result): void {
  out(`${r.status.padEnd(4)} ${r.check.padEnd(10)} ${r.detail}`);
  if (r.fix && (r.status === "fail" || r.status === "warn")) out(`${" ".repeat(16)}fix: ${r.fix}`);
}

/** The checks behind TLS, in the order they print. */
const BEHIND_TLS = ["key", "ts2021", "server_url", "derp"];
/** Every check after dns, in the order they print. */
const AFTER_DNS = ["https", "http", "tls", ...BEHIND_TLS, "stun"];

/** A check not tried because `root` failed: fixing `root` is what to do first. */
const skip =
  (root: string, why: string) =>
  (check: string): Result => ({ check, status: "skip", detail: `not tried: ${root} fails (${why})`, because: root });

export async function preflight(t: Target): Promise<Result[]> {
  const { result: dns, address } = await checkDns(t);
  if (!address) return [dns, ...AFTER_DNS.map(skip("dns", "no address to try"))];
  const [https, http] = [
    await checkTcp("https", address, t.port, FIX.https(), "fail"),
    await checkTcp("http", address, 80, FIX.http(), "warn"),
  ];
  // No host at the address at all is the record's fault, not the firewall's (which drops, so times out).
  if (https.unreachable && http.unreachable)
    return [noHostAt(t, dns, address, https.result.detail), ...AFTER_DNS.map(skip("dns", `no host at ${address}`))];
  const results = [dns, https.result, http.result];
  if (https.result.status !== "ok") results.push(...["tls", ...BEHIND_TLS].map(skip("https", `${address}:${t.port} is not reachable`)));
  else {
    const certificate = await checkTls(t, address);
    results.push(certificate);
    // Without a certificate the client trusts, nothing behind TLS can be judged.
    if (certificate.status === "fail") results.push(...BEHIND_TLS.map(skip("tls", "the certificate is not trusted for the name")));
    else results.push(await checkKey(t, address), ...(await checkControl(t, address)), await checkDerp(t, address));
  }
  results.push(await checkStun(address));
  return results;
}

/** dns resolved, but to an address where no host answers (an old VPS's, a typo): dns is what fails. */
export function noHostAt(t: Target, dns: Result, address: string, why: string): Result {
  return { ...dns, status: "fail", detail: `${dns.detail}, but no host answers at ${address} (${why})`, fix: FIX.dnsWrong(t.name) };
}

async function checkDns(t: Target): Promise<{ result: Result; address?: string }> {
  if (net.isIP(t.name))
    return { result: { check: "dns", status: "ok", detail: `${t.name} is an address, no DNS needed` }, address: t.name };
  const resolver = new Resolver({ timeout: 3000, tries: 2 });
  if (t.dns) resolver.setServers([t.dns]);
  const v4 = await resolver.resolve4(t.name).catch((e: NodeJS.ErrnoException) => e);
  const v6 = await resolver.resolve6(t.name).catch(() => [] as string[]);
  const via = t.dns ? ` (asked ${t.dns})` : "";
  if (v4 instanceof Error || !v4.length) {
    const why = v4 instanceof Error ? (v4.code === "ENOTFOUND" ? "NXDOMAIN" : (v4.code ?? v4.message)) : "no A record";
    return { result: { check: "dns", status: "fail", detail: `${t.name}: ${why}${via}`, fix: FIX.dns(t.name) } };
  }
  return { result: { check: "dns", status: "ok", detail: `${t.name} -> ${[...v4, ...v6].join(", ")}${via}` }, address: v4[0] };
}

/** Host (or network) unreachable: no machine at the address, as a router or ARP tells. */
const NO_HOST = new Set(["EHOSTUNREACH", "ENETUNREACH"]);

function checkTcp(
  check: string,
  address: string,
  port: number,
  fix: string,
  failAs: Status,
): Promise<{ result: Result; unreachable: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: address, port });
    const done = (status: Status, detail: string, unreachable = false) => {
      s.destroy();
      resolve({ result: { check, status, detail, fix }, unreachable });
    };
    s.setTimeout(CONNECT_TIMEOUT_MS, () =>
      done(failAs, `${address}:${port}/tcp: no answer in ${CONNECT_TIMEOUT_MS / 1000} s (dropped by a firewall?)`),
    );
    s.once("connect", () => done("ok", `${address}:${port}/tcp accepts connections`));
    s.once("error", (e: NodeJS.ErrnoException) =>
      done(
        failAs,
        `${address}:${port}/tcp: ${e.code === "ECONNREFUSED" ? "refused (nothing listens)" : e.message}`,
        NO_HOST.has(e.code ?? ""),
      ),
    );
  });
}

/** The system's roots plus --ca's, or undefined for the system's alone. */
function trusted(t: Target): string | undefined {
  return t.ca ? [...tls.rootCertificates, t.ca].join("\n") : undefined;
}

function checkTls(t: Target, address: string): Promise<Result> {
  return new Promise((resolve) => {
    const s = tls.connect({
      host: address,
      port: t.port,
      servername: net.isIP(t.name) ? undefined : t.name,
      ca: trusted(t),
      rejectUnauthorized: false,
    });
    const done = (r: Omit<Result, "check" | "fix">) => {
      s.destroy();
      resolve({ check: "tls", fix: FIX.tls(t.name), ...r });
    };
    s.setTimeout(CONNECT_TIMEOUT_MS, () => done({ status: "fail", detail: "no TLS handshake in 5 s" }));
    s.once("error", (e) => done({ status: "fail", detail: `handshake failed: ${e.message}` }));
    s.once("secureConnect", () => {
      const cert = s.getPeerCertificate();
      const days = Math.floor((Date.parse(cert.valid_to) - Date.now()) / 86_400_000);
      const about = `issued by ${cert.issuer?.CN ?? "?"}, valid ${days} more days`;
      const mismatch = tls.checkServerIdentity(t.name, cert);
      if (!s.authorized) done({ status: "fail", detail: `not trusted (${String(s.authorizationError)}), ${about}` });
      else if (mismatch) done({ status: "fail", detail: `not valid for ${t.name}: ${mismatch.message}` });
      else done({ status: days < 14 ? "warn" : "ok", detail: `valid for ${t.name}, ${about}` });
    });
  });
}

async function checkKey(t: Target, address: string): Promise<Result> {
  try {
    const key = await fetchServerKey(t.url.origin, undefined, { ca: trusted(t), address });
    return { check: "key", status: "ok", detail: `/key answers with a machine key (${Buffer.from(key).toString("hex").slice(0, 8)}...)` };
  } catch (e) {
    return { check: "key", status: "fail", detail: `/key: ${errorMessage(e)}`, fix: FIX.key() };
  }
}

/** ts2021, then (over that connection) server_url: judged only when the upgrade goes through. */
export async function checkControl(t: Target, address: string): Promise<[Result, Result]> {
  let client: ControlClient;
  try {
    client = await ControlClient.connect({ url: t.url.origin, ca: trusted(t), address });
  } catch (e) {
    return [
      { check: "ts2021", status: "fail", detail: errorMessage(e), fix: FIX.ts2021() },
      skip("ts2021", "the ts2021 upgrade does not go through")("server_url"),
    ];
  }
  try {
    return [
      { check: "ts2021", status: "ok", detail: "the ts2021 upgrade and its Noise handshake go through" },
      await checkServerUrl(t, client),
    ];
  } finally {
    client.close();
  }
}

/**
 * What the server believes its URL is (Headscale's server_url): a registration without an auth
 * key, from a fresh node key, is answered with a login link made from it, as `tailscale up`
 * without --auth-key prints. The login is only pending; it expires unused (Headscale: 15 min).
 */
async function checkServerUrl(t: Target, client: ControlClient): Promise<Result> {
  const check = "server_url";
  let authUrl: unknown;
  try {
    const nodeKey = formatKey("nodekey", newKeyPair().publicKey);
    authUrl = (await client.register({ nodeKey, hostname: "wg3-preflight" })).AuthURL;
  } catch (e) {
    return { check, status: "fail", detail: `a registration without an auth key failed: ${errorMessage(e)}`, fix: FIX.serverUrl(t.url) };
  }
  return serverUrlResult(t.url, authUrl);
}

/** Compares the origin of the login link a server handed out with the URL preflight was asked about. */
export function serverUrlResult(asked: URL, authUrl: unknown): Result {
  const check = "server_url";
  let link: URL;
  try {
    link = new URL(String(authUrl));
  } catch {
    return {
      check,
      status: "warn",
      detail: `the registration answer has no login link to read the server's URL from (AuthURL ${JSON.stringify(authUrl)})`,
    };
  }
  if (link.origin === asked.origin) return { check, status: "ok", detail: `the server hands out login links at ${link.origin}` };
  return {
    check,
    status: "fail",
    detail: `the server calls itself ${link.origin} (its login links go to ${link.origin}/register/...), not ${asked.origin}`,
    fix: FIX.serverUrl(asked),
  };
}

/** GET /derp with Upgrade: DERP, as tailscaled opens the embedded relay, up to the relay's first frame. */
export async function checkDerp(t: Target, address: string): Promise<Result> {
  try {
    const g = await derpGreeting({
      url: `${t.url.origin}/derp`,
      address,
      tls: { ca: trusted(t) },
      timeoutMs: CONNECT_TIMEOUT_MS,
    });
    const key = g.serverKey.toString("hex").slice(0, 8);
    return { check: "derp", status: "ok", detail: `/derp upgrades to DERP (version ${g.version ?? "?"}, relay key ${key}...)` };
  } catch (e) {
    const detail = oneLine(errorMessage(e));
    // No relay at /derp is a choice (DERP elsewhere in the map), not a broken server.
    if (/ 404 /.test(detail)) return { check: "derp", status: "warn", detail: `no DERP relay at /derp: ${detail}`, fix: FIX.derp() };
    return { check: "derp", status: "fail", detail, fix: FIX.derp() };
  }
}

/** An error's text on one line, cut short (a proxy's error page can be long). */
function oneLine(text: string, max = 200): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max)}...` : flat;
}

/** A binding request as tailscaled sends it: SOFTWARE "tailnode" and a FINGERPRINT, which Tailscale's STUN server requires. */
export function stunRequest(txid: Buffer): Buffer {
  const software = Buffer.from("tailnode");
  const head = Buffer.alloc(20);
  head.writeUInt16BE(0x0001, 0);
  head.writeUInt16BE(4 + software.length + 8, 2);
  head.writeUInt32BE(STUN_MAGIC, 4);
  txid.copy(head, 8);
  const attr = Buffer.alloc(4);
  attr.writeUInt16BE(0x8022, 0);
  attr.writeUInt16BE(software.length, 2);
  const body = Buffer.concat([head, attr, software]);
  const fp = Buffer.alloc(8);
  fp.writeUInt16BE(0x8028, 0);
  fp.writeUInt16BE(4, 2);
  fp.writeUInt32BE((crc32(body) ^ 0x5354554e) >>> 0, 4);
  return Buffer.concat([body, fp]);
}

/**
 * The XOR-MAPPED-ADDRESS of a binding success response to `txid`, as ip:port. A server on a
 * dual-stack socket (Headscale's) reports an IPv4 client as an IPv4-mapped IPv6 address.
 */
export function stunMappedAddress(msg: Buffer, txid: Buffer): string | undefined {
  if (msg.length < 20 || msg.readUInt16BE(0) !== 0x0101 || !msg.subarray(8, 20).equals(txid)) return undefined;
  for (let i = 20; i + 4 <= msg.length; ) {
    const type = msg.readUInt16BE(i);
    const len = msg.readUInt16BE(i + 2);
    if (type === 0x0020 && len >= 8) {
      const port = msg.readUInt16BE(i + 6) ^ (STUN_MAGIC >>> 16);
      const ip = xorAddress(msg.subarray(i + 8, i + 4 + len), msg.subarray(4, 20));
      return ip && `${ip}:${port}`;
    }
    i += 4 + len + ((4 - (len % 4)) % 4);
  }
  return undefined;
}

/** An address XORed with the magic cookie and transaction id (RFC 5389), in text. */
function xorAddress(raw: Buffer, cookieAndTxid: Buffer): string | undefined {
  if (raw.length !== 4 && raw.length !== 16) return undefined;
  const b = Buffer.from(raw.map((x, k) => x ^ cookieAndTxid[k]!));
  const v4 =
    b.length === 4 ? b : b.subarray(0, 12).equals(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255])) ? b.subarray(12) : undefined;
  if (v4) return [...v4].join(".");
  return (b.toString("hex").match(/.{4}/g) ?? []).join(":");
}

function checkStun(address: string): Promise<Result> {
  const txid = randomBytes(12);
  const req = stunRequest(txid);
  const sock = dgram.createSocket("udp4");
  return new Promise((resolve) => {
    const done = (r: Omit<Result, "check" | "fix">) => {
      clearInterval(resend);
      clearTimeout(deadline);
      sock.close();
      resolve({ check: "stun", fix: FIX.stun(), ...r });
    };
    const send = () => sock.send(req, STUN_PORT, address);
    // UDP may drop a packet: ask three times, a second apart, before calling it unanswered.
    const resend = setInterval(send, 1000);
    const deadline = setTimeout(() => done({ status: "fail", detail: `no STUN answer from ${address}:${STUN_PORT}/udp in 3 s` }), 3000);
    sock.on("message", (msg) => {
      const mapped = stunMappedAddress(msg, txid);
      if (mapped) done({ status: "ok", detail: `${address}:${STUN_PORT}/udp answers; it sees this machine as ${mapped}` });
    });
    sock.on("error", (e) => done({ status: "fail", detail: `STUN to ${address}:${STUN_PORT}/udp: ${e.message}` }));
    send();
  });
}
