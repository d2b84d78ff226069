/**
 * What a simulated node needs from one MapResponse, read straight from its JSON bytes: the
 * node's own ID, and the IDs and endpoints of the peers it lists, adds, patches or removes.
 * At 1000 nodes the load generator receives about a gigabyte of netmaps and deltas; decoding
 * all of it into objects (Hostinfo and all) was most of its work. The scanner walks the bytes
 * once, skipping every other value, and decodes only those few fields (with JSON.parse, so
 * they come out exactly as from JSON.parse of the whole). It assumes valid JSON (what every
 * server sends); on malformed input it throws or reads garbage, never loops.
 */
import { zstdDecode } from "../../src/control/client.ts";

/** A peer as a map message lists it (ID from `ID`, or `NodeID` in a patch). */
export interface WirePeer {
  id: string;
  /** Absent when the message does not say; null when it says null. */
  endpoints?: string[] | null;
}

export interface MapSummary {
  /** `Node` is present and truthy (a full netmap carries it). */
  node: boolean;
  /** `Node.ID`, as String() of its JSON value. */
  nodeId?: string;
  /** `Peers`, when it is an array: the node's whole peer list. */
  peers?: WirePeer[];
  changed: WirePeer[];
  patched: WirePeer[];
  removed: string[];
}

type Json = Record<string, unknown>;

/** The same summary from a decoded message (the reference the scanner is tested against). */
export function summarizeMap(m: Json): MapSummary {
  const node = m.Node as Json | undefined;
  const peer = (key: "ID" | "NodeID") => (p: Json) => {
    const w: WirePeer = { id: String(p[key]) };
    if (p.Endpoints !== undefined) w.endpoints = p.Endpoints as string[] | null;
    return w;
  };
  const s: MapSummary = {
    node: Boolean(node),
    changed: ((m.PeersChanged as Json[] | null) ?? []).map(peer("ID")),
    patched: ((m.PeersChangedPatch as Json[] | null) ?? []).map(peer("NodeID")),
    removed: ((m.PeersRemoved as unknown[] | null) ?? []).map(String),
  };
  if (node?.ID !== undefined) s.nodeId = String(node.ID);
  if (Array.isArray(m.Peers)) s.peers = (m.Peers as Json[]).map(peer("ID"));
  return s;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

function fail(b: Buffer, i: number, what: string): never {
  throw new Error(`map message is not the JSON expected: ${what} at byte ${i} of ${b.length}`);
}

function skipSpace(b: Buffer, i: number): number {
  for (let c = b[i]; c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09; c = b[++i]);
  return i;
}

/** Index after the string that starts at i (b[i] is its opening quote). */
function skipString(b: Buffer, i: number): number {
  // Most strings are short: look at a few bytes here before asking memchr (a native call).
  const n = Math.min(b.length, i + 24);
  for (let j = i + 1; j < n; j++) {
    const c = b[j];
    if (c === QUOTE) return j + 1;
    if (c === BACKSLASH) return skipEscaped(b, i);
  }
  return skipEscaped(b, i);
}

function skipEscaped(b: Buffer, i: number): number {
  // memchr to the next quote; it ends the string unless an odd run of backslashes escapes it.
  for (let j = b.indexOf(QUOTE, i + 1); j >= 0; j = b.indexOf(QUOTE, j + 1)) {
    let k = j - 1;
    while (b[k] === BACKSLASH) k--;
    if ((j - 1 - k) % 2 === 0) return j + 1;
  }
  return fail(b, i, "an unterminated string");
}

/** Index after the value that starts at i (no leading space). */
function skipValue(b: Buffer, i: number): number {
  const n = b.length;
  const c = b[i];
  if (c === QUOTE) return skipString(b, i);
  if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
    let depth = 0;
    for (let j = i; j < n; j++) {
      const d = b[j];
      if (d === QUOTE) j = skipString(b, j) - 1;
      else if (d === OPEN_OBJECT || d === OPEN_ARRAY) depth++;
      else if (d === CLOSE_OBJECT || d === CLOSE_ARRAY) {
        if (--depth === 0) return j + 1;
      }
    }
    return fail(b, i, "an unterminated object or array");
  }
  // A number, true, false or null: up to the next delimiter.
  let j = i;
  for (
    let d = b[j];
    j < n && d !== COMMA && d !== CLOSE_OBJECT && d !== CLOSE_ARRAY && d !== 0x20 && d !== 0x0a && d !== 0x0d && d !== 0x09;
    d = b[++j]
  );
  if (j === i) fail(b, i, "a missing value");
  return j;
}

/** The JSON value at [i, end), decoded. */
function decode(b: Buffer, i: number, end: number): unknown {
  return JSON.parse(b.toString("utf8", i, end));
}

/** An ID as String(JSON.parse(...)) gives it; a short plain integer needs no parse. */
function decodeId(b: Buffer, i: number, end: number): string {
  if (end - i > 15 || (b[i] === 0x30 && end - i > 1)) return String(decode(b, i, end));
  for (let k = i; k < end; k++) if (b[k]! < 0x30 || b[k]! > 0x39) return String(decode(b, i, end));
  return b.toString("latin1", i, end);
}

/** Whether the key string at [i, end) (quotes included) is `name`; ASCII names only. */
function keyIs(b: Buffer, i: number, end: number, name: string): boolean {
  if (end - i - 2 !== name.length) return end - i - 2 > name.length && escaped(b, i, end) && decode(b, i, end) === name;
  for (let k = 0; k < name.length; k++) if (b[i + 1 + k] !== name.charCodeAt(k)) return false;
  return true;
}

function escaped(b: Buffer, i: number, end: number): boolean {
  for (let k = i; k < end; k++) if (b[k] === BACKSLASH) return true;
  return false;
}

/*
 * Objects and arrays are walked with two steps: first() from the opening bracket, next() from
 * the end of a member or item. Both return where the next member (its key) or item starts, or,
 * at the closing bracket, ~(the index after it): negative, so `while (i >= 0)` walks them all.
 */
function first(b: Buffer, i: number, open: number, close: number, what: string): number {
  if (b[i] !== open) fail(b, i, what);
  i = skipSpace(b, i + 1);
  return b[i] === close ? ~(i + 1) : i;
}

function next(b: Buffer, i: number, close: number): number {
  i = skipSpace(b, i);
  if (b[i] === COMMA) return skipSpace(b, i + 1);
  if (b[i] === close) return ~(i + 1);
  return fail(b, i, "a comma or a closing bracket");
}

/** Where the value of the member whose key ends at kEnd begins (after its colon). */
function valueAfter(b: Buffer, kEnd: number): number {
  const colon = skipSpace(b, kEnd);
  if (b[colon] !== COLON) fail(b, colon, "a colon");
  return skipSpace(b, colon + 1);
}

function keyEnd(b: Buffer, k: number): number {
  if (b[k] !== QUOTE) fail(b, k, "a member name");
  return skipString(b, k);
}

/** The peer object at i: its ID (`idKey`) and, if wanted, its endpoints. Returns the index after it. */
function scanPeer(b: Buffer, i: number, idKey: "ID" | "NodeID", endpoints: boolean, out: WirePeer[]): number {
  const p: WirePeer = { id: "undefined" };
  out.push(p);
  let k = first(b, i, OPEN_OBJECT, CLOSE_OBJECT, "an object");
  while (k >= 0) {
    const kEnd = keyEnd(b, k);
    const v = valueAfter(b, kEnd);
    const end = skipValue(b, v);
    if (keyIs(b, k, kEnd, idKey)) p.id = decodeId(b, v, end);
    else if (endpoints && keyIs(b, k, kEnd, "Endpoints")) p.endpoints = decode(b, v, end) as string[] | null;
    k = next(b, end, CLOSE_OBJECT);
  }
  return ~k;
}

/** The peer array at i (or null, which reads as empty). Returns the index after it. */
function scanPeers(b: Buffer, i: number, idKey: "ID" | "NodeID", endpoints: boolean, out: WirePeer[]): number {
  if (b[i] !== OPEN_ARRAY) return skipNull(b, i);
  let v = first(b, i, OPEN_ARRAY, CLOSE_ARRAY, "an array");
  while (v >= 0) v = next(b, scanPeer(b, v, idKey, endpoints, out), CLOSE_ARRAY);
  return ~v;
}

function skipNull(b: Buffer, i: number): number {
  if (b[i] === 0x6e && b[i + 1] === 0x75 && b[i + 2] === 0x6c && b[i + 3] === 0x6c) return i + 4;
  return fail(b, i, "an array or null");
}

/**
 * The summary of the MapResponse whose JSON is `b`; equal to summarizeMap(JSON.parse(b)).
 * Without `endpoints`, peers' endpoints are skipped (as if no message had any): a node
 * needs them only while it watches for new ones.
 */
export function scanMap(b: Buffer, endpoints = true): MapSummary {
  const s: MapSummary = { node: false, changed: [], patched: [], removed: [] };
  let k = first(b, skipSpace(b, 0), OPEN_OBJECT, CLOSE_OBJECT, "an object");
  while (k >= 0) {
    const kEnd = keyEnd(b, k);
    const v = valueAfter(b, kEnd);
    let end: number;
    if (keyIs(b, k, kEnd, "Node")) end = scanNode(b, v, s);
    else if (keyIs(b, k, kEnd, "Peers")) {
      delete s.peers;
      if (b[v] !== OPEN_ARRAY) end = skipValue(b, v);
      else {
        s.peers = [];
        end = scanPeers(b, v, "ID", endpoints, s.peers);
      }
    } else if (keyIs(b, k, kEnd, "PeersChanged")) {
      s.changed = [];
      end = scanPeers(b, v, "ID", endpoints, s.changed);
    } else if (keyIs(b, k, kEnd, "PeersChangedPatch")) {
      s.patched = [];
      end = scanPeers(b, v, "NodeID", endpoints, s.patched);
    } else {
      end = skipValue(b, v);
      if (keyIs(b, k, kEnd, "PeersRemoved")) s.removed = ((decode(b, v, end) as unknown[] | null) ?? []).map(String);
    }
    k = next(b, end, CLOSE_OBJECT);
  }
  if (skipSpace(b, ~k) !== b.length) fail(b, ~k, "the end of the message");
  return s;
}

/** `Node`: whether it is truthy, and its ID. Returns the index after it. */
function scanNode(b: Buffer, at: number, s: MapSummary): number {
  delete s.nodeId;
  if (b[at] !== OPEN_OBJECT) {
    const end = skipValue(b, at);
    const v = decode(b, at, end) as { ID?: unknown } | null;
    s.node = Boolean(v);
    if (v?.ID !== undefined) s.nodeId = String(v.ID);
    return end;
  }
  s.node = true;
  let k = first(b, at, OPEN_OBJECT, CLOSE_OBJECT, "an object");
  while (k >= 0) {
    const kEnd = keyEnd(b, k);
    const v = valueAfter(b, kEnd);
    const end = skipValue(b, v);
    if (keyIs(b, k, kEnd, "ID")) s.nodeId = decodeId(b, v, end);
    k = next(b, end, CLOSE_OBJECT);
  }
  return ~k;
}

/**
 * Summaries of the last few messages, by the exact bytes of their zstd frames. A server that
 * sends one delta to every stream (the null server; the builtin one without a policy) has a
 * worker receive the same frame once per node it drives: a hit costs a byte comparison instead
 * of a decode and a scan. Other frames just miss (Headscale 0.29's: no two of its frames were
 * the same in a 30-node run, so each still costs fzstd). Summaries handed out are shared: read
 * them, never change them.
 */
export class ScanCache {
  private readonly entries: { frame: Buffer; endpoints: boolean; summary: MapSummary }[] = [];
  private next = 0;

  constructor(
    private readonly size = 8,
    /** Larger frames (the builtin's stored full netmaps, each with its own node first) are not worth comparing. */
    private readonly maxBytes = 64 * 1024,
  ) {}

  /** The summary of the map message in `zstdFrame` (see scanMap for `endpoints`). */
  scan(zstdFrame: Buffer, endpoints: boolean): MapSummary {
    if (zstdFrame.length > this.maxBytes) return scanMap(zstdDecode(zstdFrame), endpoints);
    for (const e of this.entries)
      if (e.endpoints === endpoints && e.frame.length === zstdFrame.length && e.frame.equals(zstdFrame)) return e.summary;
    const summary = scanMap(zstdDecode(zstdFrame), endpoints);
    // A copy: the frame may be a view into a much larger buffer.
    this.entries[this.next] = { frame: Buffer.from(zstdFrame), endpoints, summary };
    this.next = (this.next + 1) % this.size;
    return summary;
  }
}
