/**
 * STUN binding responder (RFC 5389) for the embedded DERP region.
 *
 * Facts from tailscale/tailscale net/stun/stun.go (the client side, and what derper answers with):
 * - The client's request: type 0x0001, length, magic cookie 21 12 a4 42, 12-byte transaction id,
 *   SOFTWARE (0x8022) "tailnode", FINGERPRINT (0x8028) = CRC-32 (IEEE) of everything before it,
 *   XOR 0x5354554e.
 * - A packet is STUN when it is >= 20 bytes, its top two bits are zero and bytes 4..8 are the cookie.
 * - The answer: type 0x0101 (success), one XOR-MAPPED-ADDRESS (0x0020): 0, family (1 = IPv4,
 *   2 = IPv6), port ^ 0x2112, address ^ (cookie || transaction id). The client also accepts
 *   0x8020 and MAPPED-ADDRESS (0x0001) as fallbacks and unmaps IPv4-mapped IPv6 addresses.
 * net/stunserver/stunserver.go: derper answers only requests that carry SOFTWARE "tailnode" and a
 * valid trailing FINGERPRINT. We answer any well-formed Binding Request (so ordinary STUN tools
 * work too) but, like derper, drop one whose FINGERPRINT is present and wrong, or not last.
 * Attribute layout and padding: RFC 5389 §15; test vectors: RFC 5769 §2.2/§2.3.
 */
import dgram from "node:dgram";
import net from "node:net";

export const STUN_MAGIC_COOKIE = 0x2112a442;
const HEADER_LEN = 20;
const ATTR_XOR_MAPPED_ADDRESS = 0x0020;
const ATTR_FINGERPRINT = 0x8028;
const FINGERPRINT_XOR = 0x5354554e;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3), as zlib.crc32 computes it (which Node 18 lacks). */
export function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = (CRC_TABLE[(c ^ x) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function stunFingerprint(b: Uint8Array): number {
  return (crc32(b) ^ FINGERPRINT_XOR) >>> 0;
}

/** The transaction id of a well-formed Binding Request, or null for anything else. */
export function parseBindingRequest(b: Buffer): Buffer | null {
  if (b.length < HEADER_LEN || (b[0] as number) & 0xc0 || b.readUInt32BE(4) !== STUN_MAGIC_COOKIE) return null;
  if (b.readUInt16BE(0) !== 0x0001) return null; // class request, method Binding
  const declared = b.readUInt16BE(2);
  if (declared % 4 !== 0 || HEADER_LEN + declared > b.length) return null;
  const end = HEADER_LEN + declared;
  let off = HEADER_LEN;
  while (off < end) {
    if (off + 4 > end) return null;
    const type = b.readUInt16BE(off);
    const len = b.readUInt16BE(off + 2);
    const padded = (len + 3) & ~3;
    if (off + 4 + padded > end) return null;
    if (type === ATTR_FINGERPRINT) {
      // FINGERPRINT must be the last attribute and match the CRC of the message before it.
      if (len !== 4 || off + 8 !== end) return null;
      if (b.readUInt32BE(off + 4) !== stunFingerprint(b.subarray(0, off))) return null;
    }
    off += 4 + padded;
  }
  return Buffer.from(b.subarray(8, 20));
}

/** A Binding success response carrying XOR-MAPPED-ADDRESS for address:port. */
export function bindingResponse(txId: Uint8Array, address: string, port: number): Buffer {
  let addr = address;
  if (addr.startsWith("::ffff:") && net.isIPv4(addr.slice(7))) addr = addr.slice(7);
  const v4 = net.isIPv4(addr);
  const ip = v4 ? Buffer.from(addr.split(".").map(Number)) : ipv6Bytes(addr);
  const attrLen = 4 + ip.length;
  const out = Buffer.alloc(HEADER_LEN + 4 + attrLen);
  out.writeUInt16BE(0x0101, 0);
  out.writeUInt16BE(4 + attrLen, 2);
  out.writeUInt32BE(STUN_MAGIC_COOKIE, 4);
  out.set(txId.subarray(0, 12), 8);
  out.writeUInt16BE(ATTR_XOR_MAPPED_ADDRESS, 20);
  out.writeUInt16BE(attrLen, 22);
  out[24] = 0;
  out[25] = v4 ? 1 : 2;
  out.writeUInt16BE((port ^ (STUN_MAGIC_COOKIE >>> 16)) & 0xffff, 26);
  for (let i = 0; i < ip.length; i++) out[28 + i] = (ip[i] as number) ^ (out[4 + i] as number); // cookie, then txid
  return out;
}

function ipv6Bytes(addr: string): Buffer {
  const zone = addr.indexOf("%");
  const a = zone >= 0 ? addr.slice(0, zone) : addr;
  if (!net.isIPv6(a)) throw new Error(`not an IP address: ${addr}`);
  let groups: string[];
  const dbl = a.indexOf("::");
  const parse = (s: string) => (s === "" ? [] : s.split(":"));
  let tail = parse(dbl >= 0 ? a.slice(dbl + 2) : "");
  let head = parse(dbl >= 0 ? a.slice(0, dbl) : a);
  const last = (dbl >= 0 ? tail : head).at(-1);
  let v4tail: number[] = [];
  if (last?.includes(".")) {
    v4tail = last.split(".").map(Number);
    if (dbl >= 0) tail = tail.slice(0, -1);
    else head = head.slice(0, -1);
  }
  const want = 8 - (v4tail.length ? 2 : 0);
  if (dbl >= 0) groups = [...head, ...Array(want - head.length - tail.length).fill("0"), ...tail];
  else groups = head;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(Number.parseInt(g, 16), i * 2));
  v4tail.forEach((x, i) => {
    out[12 + i] = x;
  });
  return out;
}

export interface StunServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Listens on UDP host:port (port 0 picks one) and answers Binding Requests. Without a host it
 * binds "::" dual-stack (IPv4 and IPv6), falling back to 0.0.0.0 where IPv6 is unavailable.
 */
export async function startStun(opts: { host?: string; port: number; log?: (msg: string) => void }): Promise<StunServer> {
  const log = opts.log ?? (() => {});
  const attempts: { type: "udp4" | "udp6"; host: string }[] = opts.host
    ? [{ type: net.isIPv6(opts.host) ? "udp6" : "udp4", host: opts.host }]
    : [
        { type: "udp6", host: "::" },
        { type: "udp4", host: "0.0.0.0" },
      ];
  let lastErr: unknown;
  for (const a of attempts) {
    try {
      const sock = await bind(a.type, a.host, opts.port);
      sock.on("message", (msg, rinfo) => {
        try {
          const tx = parseBindingRequest(msg);
          if (!tx) return;
          sock.send(bindingResponse(tx, rinfo.address, rinfo.port), rinfo.port, rinfo.address, () => {});
        } catch (err) {
          log(`stun: ${String(err)}`);
        }
      });
      sock.on("error", (err) => log(`stun: socket error: ${err.message}`));
      return {
        port: sock.address().port,
        close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
      };
    } catch (err) {
      lastErr = err;
    }
  }
  throw lastErr;
}

function bind(type: "udp4" | "udp6", host: string, port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type, ipv6Only: false });
    const onError = (err: Error) => {
      try {
        sock.close();
      } catch {
        // already closed
      }
      reject(err);
    };
    sock.once("error", onError);
    sock.bind({ port, address: host }, () => {
      sock.off("error", onError);
      resolve(sock);
    });
  });
}
