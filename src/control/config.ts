import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import type { AcmeConfig } from "./acme.ts";
import { loadDerpPaths, type TailcfgRegion } from "./derp-paths.ts";
import type { DerpRegion } from "./mapper.ts";

/**
 * The control server's configuration file. Its keys follow Headscale's config.yaml where the
 * two overlap (server_url, listen_addr, tls_*_path, prefixes, dns, derp.server, unix_socket),
 * so a workshop attendee reading either recognises the other.
 */
export interface ControlConfig {
  serverUrl: string;
  listen: { host: string; port: number; tls?: { cert: string; key: string } };
  /** A certificate from an ACME CA for the listener instead of tls_cert_path (Headscale's tls_letsencrypt_* and acme_* keys). */
  acme?: AcmeConfig;
  stateDir: string;
  adminSocket: string;
  prefixes: { v4: string; v6: string };
  dns: { baseDomain: string; nameservers: string[] };
  derp: {
    enabled: boolean;
    region: DerpRegion;
    /** Regions from `derp.paths` files (Headscale's key), served beside the embedded one. */
    extraRegions: TailcfgRegion[];
    stunListen?: { host: string; port: number };
    verifyClients: boolean;
  };
  /** Prometheus /metrics on its own address (Headscale's metrics_listen_addr); none if unset. */
  metricsListen?: { host: string; port: number };
  limits: Limits;
  /**
   * An ephemeral node that went offline is deleted after this long unless it comes back
   * (Headscale's node.ephemeral.inactivity_timeout, formerly ephemeral_node_inactivity_timeout; default 30m).
   */
  ephemeralInactivityTimeout: number;
  /** Key expiry (ms) of a person's node from its login, when the client asks none (Headscale's node.expiry); 0: never. */
  nodeExpiry: number;
  /** Interactive logins through an OpenID Connect provider (Headscale's `oidc:`); none if no issuer. */
  oidc?: OidcConfig;
}

/** Headscale's `oidc:` keys, as far as this server implements them. */
export interface OidcConfig {
  issuer: string;
  clientId: string;
  clientSecret: string;
  scope: string[];
  /** Only emails in these domains, these emails, members of these groups (each list: empty means anyone). */
  allowedDomains: string[];
  allowedUsers: string[];
  allowedGroups: string[];
  /** An unverified email is not stored, and fails allowed_domains/allowed_users (Headscale's default: required). */
  emailVerifiedRequired: boolean;
  /** PKCE (S256 only) on the authorization request. */
  pkce: boolean;
}

/**
 * Bounds on what a peer can make the server hold, and how fast a vanished peer is noticed.
 * Durations in ms. Config file: the `limits:` map, snake_case keys, durations like 30s or 15m.
 */
export interface Limits {
  /** Interactive logins waiting for an admin; the least recently used is dropped beyond this. */
  maxPendingLogins: number;
  /** A pending interactive login expires after this (Headscale: 15 minutes). */
  pendingLoginTtl: number;
  /** TCP connections on the control port (control, DERP, /key), new ones refused beyond it. */
  maxConnections: number;
  /** The TLS handshake, and TCP accept to a complete HTTP request head (so to the ts2021 upgrade). */
  handshakeTimeout: number;
  /** Concurrent HTTP/2 streams per Noise connection (tailscaled uses 3 at most). */
  maxStreamsPerConnection: number;
  /** Request bodies inside Noise (Headscale: 1 MiB). */
  maxBodyBytes: number;
  /** A request body must arrive whole within this. */
  bodyReadTimeout: number;
  /** A Noise connection with no open stream is closed after this. */
  noiseIdleTimeout: number;
  /** HTTP/2 PING on every Noise connection this often (0: never) ... */
  pingInterval: number;
  /** ... and the connection is dead if the answer takes longer than this. */
  pingTimeout: number;
  /** TCP keepalive probes start after this much silence. */
  tcpKeepalive: number;
  /** A map stream whose client does not take its data within this is closed. */
  writeTimeout: number;
  /** ... or as soon as this much is queued for it. */
  maxBufferedBytes: number;
  /** A node whose map stream ended stays online this long, waiting for a new stream (0: offline at once). */
  offlineGrace: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxPendingLogins: 1024, // Headscale's tuning.register_cache_max_entries
  pendingLoginTtl: 15 * 60_000,
  maxConnections: 10_000,
  handshakeTimeout: 10_000,
  maxStreamsPerConnection: 100,
  maxBodyBytes: 1 << 20,
  bodyReadTimeout: 10_000,
  noiseIdleTimeout: 5 * 60_000,
  // Worst case 15 s to notice a vanished client: Headscale 0.29 probes HA routers every 10 s
  // with a 5 s timeout.
  pingInterval: 10_000,
  pingTimeout: 5_000,
  tcpKeepalive: 15_000,
  writeTimeout: 30_000,
  maxBufferedBytes: 8 << 20,
  // Headscale 0.29 waits up to 10 s for a reconnect before a node whose map stream ended goes offline.
  offlineGrace: 10_000,
};

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86_400e3, w: 604_800e3 };

/** A count, or a Go-style duration ("500ms", "15s", "1m30s"; a bare 0 for "off"): a unit is required. */
function limitValue(v: unknown, what: string, duration: boolean): number {
  if (typeof v === "number" && Number.isFinite(v) && v >= 0 && (!duration || v === 0)) return v;
  const text = String(v);
  let total = 0;
  let rest = text;
  while (duration && rest) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/.exec(rest);
    if (!m) break;
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  if (duration && !rest && text) return total;
  throw new ConfigError(`${what}: want ${duration ? "a duration like 30s" : "a non-negative number"}, got ${JSON.stringify(v)}`);
}

const snake = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const DURATIONS = new Set<keyof Limits>([
  "pendingLoginTtl",
  "handshakeTimeout",
  "bodyReadTimeout",
  "noiseIdleTimeout",
  "pingInterval",
  "pingTimeout",
  "tcpKeepalive",
  "writeTimeout",
  "offlineGrace",
]);

function parseLimits(raw: Raw, where: string): Limits {
  const known = new Map(Object.keys(DEFAULT_LIMITS).map((k) => [snake(k), k as keyof Limits]));
  const out = { ...DEFAULT_LIMITS };
  for (const [k, v] of Object.entries(raw)) {
    const key = known.get(k);
    if (!key) throw new ConfigError(`${where}: limits.${k} is not a known limit (known: ${[...known.keys()].join(", ")})`);
    out[key] = limitValue(v, `${where}: limits.${k}`, DURATIONS.has(key));
  }
  return out;
}

export class ConfigError extends Error {}

export const DEFAULT_CONFIG_PATH = "/etc/wg3-control/config.yaml";
/** Where Headscale reads its config: used when ours is absent, so a Headscale VPS's file and commands work as they are. */
export const HEADSCALE_CONFIG_PATH = "/etc/headscale/config.yaml";

/** The config to read when none is given: WG3_CONTROL_CONFIG, ours, else Headscale's if it exists. */
export function defaultConfigPath(): string {
  if (process.env.WG3_CONTROL_CONFIG) return process.env.WG3_CONTROL_CONFIG;
  return !existsSync(DEFAULT_CONFIG_PATH) && existsSync(HEADSCALE_CONFIG_PATH) ? HEADSCALE_CONFIG_PATH : DEFAULT_CONFIG_PATH;
}
export const DEFAULT_ADMIN_SOCKET = "/var/run/wg3-control/admin.sock";

function hostPort(s: string, what: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(s);
  if (!m) throw new ConfigError(`${what}: want HOST:PORT, got ${JSON.stringify(s)}`);
  return { host: m[1]!, port: Number(m[2]) };
}

type Raw = Record<string, unknown>;
const obj = (v: unknown): Raw => (v && typeof v === "object" ? (v as Raw) : {});
const str = (v: unknown, what: string, dflt?: string): string => {
  if (v === undefined || v === null || v === "") {
    if (dflt !== undefined) return dflt;
    throw new ConfigError(`${what} is required`);
  }
  return String(v);
};

export function parseConfig(text: string, where = "config"): ControlConfig {
  let raw: Raw;
  try {
    raw = obj(parse(text));
  } catch (e) {
    throw new ConfigError(`${where}: not valid YAML: ${(e as Error).message}`);
  }
  const serverUrl = str(raw.server_url, `${where}: server_url`);
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch {
    throw new ConfigError(`${where}: server_url ${JSON.stringify(serverUrl)} is not a URL`);
  }
  const listen = hostPort(str(raw.listen_addr, `${where}: listen_addr`), `${where}: listen_addr`);
  const cert = raw.tls_cert_path ? String(raw.tls_cert_path) : undefined;
  const key = raw.tls_key_path ? String(raw.tls_key_path) : undefined;
  if (Boolean(cert) !== Boolean(key)) throw new ConfigError(`${where}: give both tls_cert_path and tls_key_path, or neither`);
  const stateDir = str(raw.state_dir, "", "/var/lib/wg3-control");
  const acme = acmeConfig(raw, where, stateDir);
  if (acme && cert)
    throw new ConfigError(`${where}: give tls_cert_path and tls_key_path, or tls_letsencrypt_hostname for a certificate by ACME, not both`);
  const prefixes = obj(raw.prefixes);
  const dns = obj(raw.dns);
  const derp = obj(obj(raw.derp).server);
  const derpEnabled = derp.enabled !== false;
  // Clients need a DERP map with a region (without one, tailscale up never reaches Running), and
  // only the embedded relay can be one: derp.paths may add regions (STUN-only ones) beside it.
  if (!derpEnabled)
    throw new ConfigError(
      `${where}: derp.server.enabled: false leaves clients without a DERP map; this server supports only its embedded DERP`,
    );
  const urlPort = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  const region: DerpRegion = {
    regionId: Number(derp.region_id ?? 999),
    regionCode: str(derp.region_code, "", "wg3"),
    regionName: str(derp.region_name, "", "wg-3-ways embedded DERP"),
    hostName: str(derp.hostname, "", url.hostname),
    ipv4: derp.ipv4 ? String(derp.ipv4) : /^\d+\.\d+\.\d+\.\d+$/.test(url.hostname) ? url.hostname : undefined,
    port: Number(derp.port ?? urlPort),
    stunPort: Number(derp.stun_port ?? (derp.stun_listen_addr ? hostPort(String(derp.stun_listen_addr), "stun").port : 3478)),
    insecureForTests: derp.insecure_for_tests === true,
  };
  const extraRegions = loadDerpPaths(derpPaths(obj(raw.derp).paths, where), (m) => new ConfigError(m));
  const clash = extraRegions.find((r) => r.RegionID === region.regionId);
  if (clash) throw new ConfigError(`${where}: derp.paths region ${clash.RegionID} is the embedded region's id; give it another`);
  const baseDomain = str(dns.base_domain, `${where}: dns.base_domain`);
  if (baseDomain === url.hostname || url.hostname.endsWith(`.${baseDomain}`))
    throw new ConfigError(`${where}: dns.base_domain must not contain the server_url host (clients take that domain over)`);
  return {
    serverUrl,
    listen: { ...listen, ...(cert && key ? { tls: { cert, key } } : {}) },
    ...(acme ? { acme } : {}),
    stateDir,
    adminSocket: str(raw.unix_socket, "", DEFAULT_ADMIN_SOCKET),
    prefixes: { v4: str(prefixes.v4, "", "100.64.0.0/10"), v6: str(prefixes.v6, "", "fd7a:115c:a1e0::/48") },
    dns: { baseDomain, nameservers: Array.isArray(obj(dns.nameservers).global) ? (obj(dns.nameservers).global as string[]) : [] },
    ...(raw.metrics_listen_addr ? { metricsListen: hostPort(String(raw.metrics_listen_addr), `${where}: metrics_listen_addr`) } : {}),
    limits: parseLimits(obj(raw.limits), where),
    ephemeralInactivityTimeout: ephemeralInactivityTimeout(raw, where),
    nodeExpiry: nodeExpiry(raw, where),
    ...oidcConfig(raw.oidc, where),
    derp: {
      enabled: derpEnabled,
      verifyClients: derp.verify_clients !== false,
      region,
      extraRegions,
      ...(derpEnabled && derp.stun_listen_addr !== ""
        ? { stunListen: hostPort(String(derp.stun_listen_addr ?? "0.0.0.0:3478"), "stun_listen_addr") }
        : {}),
    },
  };
}

function strings(v: unknown, what: string, dflt: string[] = []): string[] {
  if (v === undefined || v === null) return dflt;
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
    throw new ConfigError(`${what}: want a list of strings, got ${JSON.stringify(v)}`);
  return v;
}

const OIDC_KEYS = new Set([
  "issuer",
  "client_id",
  "client_secret",
  "client_secret_path",
  "scope",
  "allowed_domains",
  "allowed_users",
  "allowed_groups",
  "email_verified_required",
  "pkce",
  "only_start_if_oidc_is_available",
]);

/** `oidc:` with an issuer turns interactive logins over to the provider, as in Headscale. */
function oidcConfig(v: unknown, where: string): { oidc?: OidcConfig } {
  const raw = obj(v);
  if (!raw.issuer) return {};
  const at = `${where}: oidc`;
  for (const k of Object.keys(raw))
    if (!OIDC_KEYS.has(k)) throw new ConfigError(`${at}.${k} is not a key this server knows (known: ${[...OIDC_KEYS].join(", ")})`);
  const issuer = str(raw.issuer, `${at}.issuer`);
  if (!/^https?:\/\/[^/]/.test(issuer)) throw new ConfigError(`${at}.issuer: want an http(s) URL, got ${JSON.stringify(issuer)}`);
  if (raw.client_secret && raw.client_secret_path)
    throw new ConfigError(`${at}: client_secret and client_secret_path are mutually exclusive`);
  let clientSecret = raw.client_secret ? String(raw.client_secret) : "";
  if (raw.client_secret_path) {
    const path = String(raw.client_secret_path).replace(/\$\{?(\w+)\}?/g, (_, name: string) => process.env[name] ?? "");
    try {
      clientSecret = readFileSync(path, "utf8").trim();
    } catch (e) {
      throw new ConfigError(`${at}.client_secret_path: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  const pkce = obj(raw.pkce);
  if (pkce.enabled === true && pkce.method !== undefined && pkce.method !== "S256")
    throw new ConfigError(`${at}.pkce.method: this server supports S256 only, got ${JSON.stringify(pkce.method)}`);
  return {
    oidc: {
      issuer,
      clientId: str(raw.client_id, `${at}.client_id`),
      clientSecret: str(clientSecret, `${at}.client_secret`),
      scope: strings(raw.scope, `${at}.scope`, ["openid", "profile", "email"]),
      allowedDomains: strings(raw.allowed_domains, `${at}.allowed_domains`),
      allowedUsers: strings(raw.allowed_users, `${at}.allowed_users`),
      allowedGroups: strings(raw.allowed_groups, `${at}.allowed_groups`),
      emailVerifiedRequired: raw.email_verified_required !== false,
      pkce: pkce.enabled === true,
    },
  };
}

/** Headscale's acme_url default. */
export const LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory";

/** Headscale's keys: tls_letsencrypt_hostname turns ACME on; the others have Headscale's defaults. */
function acmeConfig(raw: Raw, where: string, stateDir: string): AcmeConfig | undefined {
  const hostname = raw.tls_letsencrypt_hostname;
  if (hostname === undefined || hostname === null || hostname === "") return undefined;
  if (typeof hostname !== "string" || !isDnsName(hostname))
    throw new ConfigError(
      `${where}: tls_letsencrypt_hostname: want a DNS name like headscale.example.com, got ${JSON.stringify(hostname)}`,
    );
  const directoryUrl = str(raw.acme_url, "", LETS_ENCRYPT_DIRECTORY);
  if (!/^https:\/\/[^/\s]+/.test(directoryUrl) || !parsesAsUrl(directoryUrl))
    throw new ConfigError(
      `${where}: acme_url: want the https URL of an ACME directory like ${LETS_ENCRYPT_DIRECTORY}, got ${JSON.stringify(raw.acme_url)}`,
    );
  const email = raw.acme_email === undefined || raw.acme_email === null ? "" : String(raw.acme_email);
  if (email && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email))
    throw new ConfigError(`${where}: acme_email: want an address like you@example.com (or nothing), got ${JSON.stringify(email)}`);
  const challenge = str(raw.tls_letsencrypt_challenge_type, "", "HTTP-01");
  if (challenge === "TLS-ALPN-01")
    throw new ConfigError(
      `${where}: tls_letsencrypt_challenge_type: TLS-ALPN-01 is not supported by this server (Node 18 cannot choose a certificate by ALPN); use HTTP-01`,
    );
  if (challenge !== "HTTP-01")
    throw new ConfigError(`${where}: tls_letsencrypt_challenge_type: want HTTP-01, got ${JSON.stringify(challenge)}`);
  const listen = str(raw.tls_letsencrypt_listen, "", ":http");
  const m = /^\[?([^\]]*)\]?:(http|\d{1,5})$/.exec(listen);
  const port = m && (m[2] === "http" ? 80 : Number(m[2]));
  if (!m || !port || port > 65535)
    throw new ConfigError(
      `${where}: tls_letsencrypt_listen: want [HOST]:PORT for the CA's HTTP-01 requests, like ":http" or "0.0.0.0:80", got ${JSON.stringify(listen)}`,
    );
  const cacheDir = str(raw.tls_letsencrypt_cache_dir, "", join(stateDir, "acme"));
  return { hostname: hostname.toLowerCase(), email, directoryUrl, httpListen: { host: m[1]!, port }, cacheDir };
}

function parsesAsUrl(s: string): boolean {
  try {
    return Boolean(new URL(s));
  } catch {
    return false;
  }
}

function isDnsName(s: string): boolean {
  if (/^[\d.]+$/.test(s) || s.length > 253) return false;
  return s.split(".").length >= 2 && s.split(".").every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l));
}

const DEFAULT_EPHEMERAL_INACTIVITY_TIMEOUT = 30 * 60_000;

/** Headscale 0.29's key, or the name it had before (still read by Headscale, as here). */
function ephemeralInactivityTimeout(raw: Raw, where: string): number {
  const current = obj(obj(raw.node).ephemeral).inactivity_timeout;
  const [key, v] =
    current !== undefined
      ? ["node.ephemeral.inactivity_timeout", current]
      : ["ephemeral_node_inactivity_timeout", raw.ephemeral_node_inactivity_timeout];
  if (v === undefined || v === null) return DEFAULT_EPHEMERAL_INACTIVITY_TIMEOUT;
  const ms = limitValue(v, `${where}: ${key}`, true);
  if (ms <= 0) throw new ConfigError(`${where}: ${key}: want a duration above 0, like 30m`);
  return ms;
}

/** Headscale's node.expiry: "0" (its default) or a duration such as 180d. */
function nodeExpiry(raw: Raw, where: string): number {
  const v = obj(raw.node).expiry;
  if (v === undefined || v === null || v === "0" || v === 0) return 0;
  return limitValue(v, `${where}: node.expiry`, true);
}

function derpPaths(v: unknown, where: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((p) => typeof p === "string" && p.startsWith("/")))
    throw new ConfigError(`${where}: derp.paths: want a list of absolute file paths, got ${JSON.stringify(v)}`);
  return v;
}

export function loadConfig(path: string): ControlConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read the config file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseConfig(text, path);
}
