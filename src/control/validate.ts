import { isIPv4, isIPv6 } from "node:net";
import { formatKey, isZeroKey, type KeyKind, parseKey } from "./keys.ts";

/**
 * Typed decoding of what clients send (tailcfg.RegisterRequest, MapRequest, Hostinfo, NetInfo).
 * Peers decode every node in their netmap with Go's encoding/json, all or nothing: one bad key,
 * endpoint or number in one node breaks every peer's map. So a request is decoded into our own
 * types, field by field, as strictly as Go would decode it, with sizes bounded; anything else
 * is refused with a RequestError naming the field. Only decoded values are stored or sent on;
 * fields we do not know are dropped (Go ignores unknown fields too).
 */

export class RequestError extends Error {}

type Dec<T> = (v: unknown, path: string) => T;

const fail = (path: string, want: string, v: unknown): never => {
  const shown = JSON.stringify(v) ?? String(v);
  throw new RequestError(`${path}: want ${want}, got ${shown.length > 60 ? `${shown.slice(0, 60)}…` : shown}`);
};

export const str =
  (max = 256): Dec<string> =>
  (v, p) =>
    typeof v === "string" && v.length <= max ? v : fail(p, `a string of at most ${max} characters`, v);

export const bool: Dec<boolean> = (v, p) => (typeof v === "boolean" ? v : fail(p, "true or false", v));

/** tailcfg's opt.Bool: true, false or null (unset); Go refuses the strings "true"/"false". */
const optBool: Dec<boolean | undefined> = (v, p) => (v === null ? undefined : bool(v, p));

export const int =
  (min: number, max: number): Dec<number> =>
  (v, p) =>
    typeof v === "number" && Number.isSafeInteger(v) && v >= min && v <= max ? v : fail(p, `an integer in [${min}, ${max}]`, v);

const finite: Dec<number> = (v, p) => (typeof v === "number" && Number.isFinite(v) ? v : fail(p, "a number", v));

export const list =
  <T>(item: Dec<T>, max: number): Dec<T[]> =>
  (v, p) => {
    if (v === null) return [];
    if (!Array.isArray(v) || v.length > max) return fail(p, `a list of at most ${max} items`, v);
    return v.map((x, i) => item(x, `${p}[${i}]`));
  };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Decode the known fields of a JSON object (others are dropped); undefined results are left out. */
type Spec<T> = { [K in keyof T]-?: Dec<T[K]> };
function struct<T>(spec: Spec<T>): Dec<T> {
  return (v, p) => {
    if (!isObject(v)) return fail(p, "an object", v);
    const out: Record<string, unknown> = {};
    for (const [k, dec] of Object.entries(spec) as [string, Dec<unknown>][]) {
      if (v[k] === undefined) continue;
      const d = dec(v[k], `${p}.${k}`);
      if (d !== undefined) out[k] = d;
    }
    return out as T;
  };
}

const optional =
  <T>(d: Dec<T>): Dec<T | undefined> =>
  (v, p) =>
    v === null || v === undefined ? undefined : d(v, p);

// ---- keys, addresses, prefixes, times ----

/** A key in Tailscale's text form, lowercased; undefined for the all-zero "no key". */
export const key =
  (kind: KeyKind): Dec<string | undefined> =>
  (v, p) => {
    let raw: Uint8Array;
    try {
      raw = parseKey(kind, v);
    } catch {
      return fail(p, `${kind}: followed by 64 hex digits`, v);
    }
    return isZeroKey(raw) ? undefined : formatKey(kind, raw);
  };

const ZONE = /^[A-Za-z0-9_.-]{1,32}$/;
/** An IP address as Go's netip.ParseAddr reads it (IPv6 zones allowed, bounded). */
export function isAddr(s: string, zone = false): boolean {
  if (isIPv4(s)) return true;
  const [a, z, ...more] = s.split("%");
  if (more.length || (z !== undefined && (!zone || !ZONE.test(z)))) return false;
  return isIPv6(a!);
}

/** "ip:port" or "[ip6]:port" (netip.AddrPort), returned in a canonical form. */
export const endpoint: Dec<string> = (v, p) => {
  const m = typeof v === "string" ? /^(?:\[([^\]]{1,80})\]|([0-9.]{7,15})):(\d{1,5})$/.exec(v) : null;
  const port = Number(m?.[3]);
  if (!m || port > 65535 || (m[1] !== undefined ? !isIPv6(m[1].split("%")[0]!) || !isAddr(m[1], true) : !isIPv4(m[2]!)))
    return fail(p, "ip:port or [ip6]:port", v);
  return m[1] !== undefined ? `[${m[1].toLowerCase()}]:${port}` : `${m[2]}:${port}`;
};

/** A prefix as netip.ParsePrefix reads it: an address without zone, then /bits. */
export const prefix: Dec<string> = (v, p) => {
  const m = typeof v === "string" ? /^([^/]{1,45})\/(\d{1,3})$/.exec(v) : null;
  const bits = Number(m?.[2]);
  const ok = m && (isIPv4(m[1]!) ? bits <= 32 : isAddr(m[1]!) && bits <= 128);
  return ok ? `${m[1]!.toLowerCase()}/${bits}` : fail(p, "a prefix like 10.0.0.0/24", v);
};

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
/** An RFC 3339 time (Go's time.Time); undefined for Go's zero time. */
export const time: Dec<Date | undefined> = (v, p) => {
  if (typeof v !== "string" || !RFC3339.test(v) || Number.isNaN(Date.parse(v))) return fail(p, "an RFC 3339 time", v);
  return v.startsWith("0001-01-01") ? undefined : new Date(v);
};

// ---- Hostinfo and NetInfo (tailcfg, tailscale 1.98) ----

export interface NetInfo {
  MappingVariesByDestIP?: boolean;
  WorkingIPv6?: boolean;
  OSHasIPv6?: boolean;
  WorkingUDP?: boolean;
  WorkingICMPv4?: boolean;
  HavePortMap?: boolean;
  UPnP?: boolean;
  PMP?: boolean;
  PCP?: boolean;
  PreferredDERP?: number;
  LinkType?: string;
  DERPLatency?: Record<string, number>;
  FirewallMode?: string;
}

const latencies: Dec<Record<string, number>> = (v, p) => {
  if (v === null) return {};
  if (!isObject(v) || Object.keys(v).length > 64) return fail(p, "an object of at most 64 latencies", v);
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [str(32)(k, `${p} key`), finite(x, `${p}.${k}`)]));
};

const netInfo = struct<NetInfo>({
  MappingVariesByDestIP: optBool,
  WorkingIPv6: optBool,
  OSHasIPv6: optBool,
  WorkingUDP: optBool,
  WorkingICMPv4: optBool,
  HavePortMap: bool,
  UPnP: optBool,
  PMP: optBool,
  PCP: optBool,
  PreferredDERP: int(0, 65535),
  LinkType: str(32),
  DERPLatency: latencies,
  FirewallMode: str(64),
});

interface Service {
  Proto: string;
  Port: number;
  Description?: string;
}
const service = struct<Service>({ Proto: str(32), Port: int(0, 65535), Description: str(256) });

interface Location {
  Country?: string;
  CountryCode?: string;
  City?: string;
  CityCode?: string;
  Latitude?: number;
  Longitude?: number;
  Priority?: number;
}
const location = struct<Location>({
  Country: str(128),
  CountryCode: str(8),
  City: str(128),
  CityCode: str(16),
  Latitude: finite,
  Longitude: finite,
  Priority: int(-(2 ** 31), 2 ** 31 - 1),
});

interface TPMInfo {
  Manufacturer?: string;
  Vendor?: string;
  Model?: number;
  FirmwareVersion?: number;
  SpecRevision?: number;
  FamilyIndicator?: string;
}
const tpm = struct<TPMInfo>({
  Manufacturer: str(64),
  Vendor: str(128),
  Model: int(-(2 ** 31), 2 ** 31 - 1),
  FirmwareVersion: int(0, Number.MAX_SAFE_INTEGER),
  SpecRevision: int(-(2 ** 31), 2 ** 31 - 1),
  FamilyIndicator: str(64),
});

export interface Hostinfo {
  IPNVersion?: string;
  FrontendLogID?: string;
  BackendLogID?: string;
  OS?: string;
  OSVersion?: string;
  Container?: boolean;
  Env?: string;
  Distro?: string;
  DistroVersion?: string;
  DistroCodeName?: string;
  App?: string;
  Desktop?: boolean;
  Package?: string;
  DeviceModel?: string;
  PushDeviceToken?: string;
  Hostname?: string;
  ShieldsUp?: boolean;
  ShareeNode?: boolean;
  NoLogsNoSupport?: boolean;
  RemoteConfig?: boolean;
  WireIngress?: boolean;
  IngressEnabled?: boolean;
  AllowsUpdate?: boolean;
  Machine?: string;
  GoArch?: string;
  GoArchVar?: string;
  GoVersion?: string;
  RoutableIPs?: string[];
  RequestTags?: string[];
  WoLMACs?: string[];
  Services?: Service[];
  NetInfo?: NetInfo;
  sshHostKeys?: string[];
  Cloud?: string;
  Userspace?: boolean;
  UserspaceRouter?: boolean;
  AppConnector?: boolean;
  ServicesHash?: string;
  PeerRelay?: boolean;
  ExitNodeID?: string;
  Location?: Location;
  TPM?: TPMInfo;
  StateEncrypted?: boolean;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const mac: Dec<string> = (v, p) => (typeof v === "string" && MAC.test(v) ? v : fail(p, "a MAC address like 00:11:22:33:44:55", v));
const s64 = str(64);

const hostinfoStruct = struct<Hostinfo>({
  IPNVersion: s64,
  FrontendLogID: s64,
  BackendLogID: s64,
  OS: str(32),
  OSVersion: str(128),
  Container: optBool,
  Env: s64,
  Distro: s64,
  DistroVersion: s64,
  DistroCodeName: s64,
  App: s64,
  Desktop: optBool,
  Package: s64,
  DeviceModel: s64,
  PushDeviceToken: str(1024),
  Hostname: str(255),
  ShieldsUp: bool,
  ShareeNode: bool,
  NoLogsNoSupport: bool,
  RemoteConfig: bool,
  WireIngress: bool,
  IngressEnabled: bool,
  AllowsUpdate: bool,
  Machine: s64,
  GoArch: s64,
  GoArchVar: s64,
  GoVersion: s64,
  RoutableIPs: list(prefix, 256),
  RequestTags: list(str(128), 64),
  WoLMACs: list(mac, 16),
  Services: list(service, 64),
  NetInfo: optional(netInfo),
  sshHostKeys: list(str(1024), 8),
  Cloud: s64,
  Userspace: optBool,
  UserspaceRouter: optBool,
  AppConnector: optBool,
  ServicesHash: s64,
  PeerRelay: bool,
  ExitNodeID: s64,
  Location: optional(location),
  TPM: optional(tpm),
  StateEncrypted: optBool,
});

/** What one node's Hostinfo may take in its peers' netmaps and in memory, serialised. */
export const MAX_HOSTINFO_BYTES = 16 * 1024;

export const hostinfo: Dec<Hostinfo> = (v, p) => {
  const h = hostinfoStruct(v, p);
  for (const k of ["RoutableIPs", "RequestTags", "WoLMACs", "Services", "sshHostKeys"] as const) if (!h[k]?.length) delete h[k];
  const size = JSON.stringify(h).length;
  if (size > MAX_HOSTINFO_BYTES) fail(p, `at most ${MAX_HOSTINFO_BYTES} bytes`, `${size} bytes`);
  return h;
};

// ---- requests ----

/** Capability versions we know of: 1.70 is 102; far above today's (~145) is not a client. */
export const capver = int(1, 10_000);

export interface RegisterRequest {
  version: number;
  nodeKey: string;
  /** The previous node key during a rotation; undefined for the zero key. */
  oldNodeKey?: string;
  authKey?: string;
  /** A requested key expiry; undefined for Go's zero time. A past time is a logout. */
  expiry?: Date;
  followup: string;
  hostinfo: Hostinfo;
  ephemeral: boolean;
}

const obj = (v: unknown, p: string): Record<string, unknown> => (isObject(v) ? v : fail(p, "an object", v));
const field = <T>(r: Record<string, unknown>, k: string, d: Dec<T>, dflt: T): T => (r[k] === undefined ? dflt : d(r[k], k));

function requiredKey(kind: KeyKind, v: unknown, p: string): string {
  return key(kind)(v, p) ?? fail(p, `a non-zero ${kind}`, v);
}

const authKey: Dec<string | undefined> = (v, p) => (v === null ? undefined : field(obj(v, p), "AuthKey", str(512), "") || undefined);

export function decodeRegister(body: unknown): RegisterRequest {
  const r = obj(body, "RegisterRequest");
  return {
    version: capver(r.Version, "Version"),
    nodeKey: requiredKey("nodekey", r.NodeKey, "NodeKey"),
    oldNodeKey: field(r, "OldNodeKey", key("nodekey"), undefined),
    authKey: field(r, "Auth", authKey, undefined),
    expiry: field(r, "Expiry", time, undefined),
    followup: field(r, "Followup", str(2048), ""),
    hostinfo: field(r, "Hostinfo", optional(hostinfo), undefined) ?? {},
    ephemeral: field(r, "Ephemeral", bool, false),
  };
}

export interface MapRequest {
  version: number;
  nodeKey: string;
  discoKey?: string;
  /** Absent when the client sent none (Go omits an empty list). */
  endpoints?: string[];
  hostinfo?: Hostinfo;
  stream: boolean;
  omitPeers: boolean;
  compress: boolean;
}

const MAX_ENDPOINTS = 64;

export function decodeMap(body: unknown): MapRequest {
  const r = obj(body, "MapRequest");
  const compress = field(r, "Compress", str(16), "");
  if (compress !== "" && compress !== "zstd") fail("Compress", '"zstd" or ""', compress);
  field(r, "EndpointTypes", list(int(0, 255), MAX_ENDPOINTS), []);
  for (const b of ["KeepAlive", "ReadOnly"]) field(r, b, bool, false);
  const endpoints = field(r, "Endpoints", list(endpoint, MAX_ENDPOINTS), undefined);
  return {
    version: capver(r.Version, "Version"),
    nodeKey: requiredKey("nodekey", r.NodeKey, "NodeKey"),
    discoKey: field(r, "DiscoKey", key("discokey"), undefined),
    endpoints: endpoints && [...new Set(endpoints)],
    hostinfo: field(r, "Hostinfo", optional(hostinfo), undefined),
    stream: field(r, "Stream", bool, false),
    omitPeers: field(r, "OmitPeers", bool, false),
    compress: compress === "zstd",
  };
}
