/**
 * Embedded DERP relay (Designated Encrypted Relay for Packets), written from facts read in
 * tailscale/tailscale at de9ec7ee. Where each
 * fact comes from, so it can be checked:
 *
 * derp/derp.go
 * - Frame = 1-byte type + uint32 big-endian payload length + payload (FrameHeaderLen 5).
 * - Types: ServerKey 0x01, ClientInfo 0x02, ServerInfo 0x03, SendPacket 0x04, RecvPacket 0x05,
 *   KeepAlive 0x06, NotePreferred 0x07, PeerGone 0x08, PeerPresent 0x09, ForwardPacket 0x0a,
 *   WatchConns 0x10, ClosePeer 0x11, Ping 0x12, Pong 0x13, Health 0x14, Restarting 0x15.
 * - Magic "DERP🔑" = 44 45 52 50 f0 9f 94 91; KeyLen 32; NonceLen 24; MaxPacketSize 64 KiB;
 *   MaxInfoLen 1 MiB; KeepAlive 60 s; ProtocolVersion 2.
 * - PeerGone payload = 32-byte peer key + 1 reason byte: 0x00 disconnected, 0x01 not here.
 * - Header "Derp-Fast-Start: 1": the client does not want the 101 response headers.
 * - ServerInfo JSON: {"version":2} (other fields omitempty).
 * derp/derpserver/handler.go (at this commit it holds what derphttp_server.go used to)
 * - /derp/probe and /derp/latency-check: GET/HEAD -> 200 with Access-Control-Allow-Origin: *,
 *   other methods -> 405. Upgrade (lower-cased) must be "derp" or "websocket", else 426
 *   "DERP requires connection upgrade". Unless fast start: "HTTP/1.1 101 Switching Protocols",
 *   Upgrade: DERP, Connection: Upgrade, Derp-Version: 2, Derp-Public-Key: <64 lower-case hex>.
 *   With fast start nothing HTTP is written; the server goes straight to the ServerKey frame.
 * - /generate_204 (captive-portal check served by cmd/derper): 204, and when the request has
 *   X-Tailscale-Challenge (<= 64 chars of [A-Za-z0-9._:-]) the reply has
 *   X-Tailscale-Response: "response <challenge>".
 * derp/derpserver/derpserver.go
 * - accept: send ServerKey (magic + server public key); read ClientInfo within 10 s (the frame
 *   must be of that type, 56 bytes <= length <= 256 KiB): 32-byte client key, then
 *   nonce + NaCl box opened with (server private, client public), JSON ClientInfo; then register
 *   the client and send ServerInfo = nonce + box sealed (server private -> client public).
 * - run loop: NotePreferred must be exactly 1 byte; WatchConns / ClosePeer / ForwardPacket need
 *   the mesh key (we have none) -> the connection is closed; Ping: 8 <= length <= 1000, Pong
 *   echoes the first 8 bytes; unknown frame types are read and discarded (connection stays).
 * - SendPacket: length >= 32, packet <= MaxPacketSize else close. Unknown destination: drop,
 *   and only if the packet looks like a disco message ("TS💬" + 32 + 24 bytes, disco/disco.go
 *   LooksLikeDiscoWrapper) send PeerGone(dst, NotHere), limited to 1/s with a burst of 3.
 * - RecvPacket to the destination = 32-byte source key + packet.
 * - When the last connection of a key goes, every client that received packets from that key
 *   gets PeerGone(key, Disconnected).
 * - Duplicate connections of one key are all kept; the newest connection, and after that the
 *   last one that sent any frame, is the active one that receives packets (policy
 *   lastWriterIsActive). When the active one leaves, a remaining one takes over.
 * - Keep-alive frames every KeepAlive + up to 5 s jitter; per-client send queue of 32 packets
 *   with a 2 s write timeout (here: a byte bound on the socket's write buffer instead).
 * derp/derp_client.go
 * - The client reads ServerKey accepting >= 40 bytes; sends ClientInfo JSON
 *   {"version":2,"CanAckPings":...}; accepts frames up to 1 MiB; KeepAlive needs no answer.
 * derp/derphttp/derphttp_client.go
 * - GET /derp with Upgrade: DERP, Connection: Upgrade; expects 101; Derp-Fast-Start only when
 *   it learned the server key from a TLS 1.3 meta certificate (which we do not serve).
 * cmd/derper/derper.go: the handler is mounted at exactly "/derp", plus /derp/probe,
 *   /derp/latency-check and /generate_204.
 * types/key/node.go: SealTo = random 24-byte nonce || box.Seal; OpenFrom = first 24 bytes nonce.
 *
 * Not implemented: WebSocket transport (Upgrade: websocket gets 426), mesh, rate limits,
 * client verification. NaCl box = X25519 (@noble/curves) + HSalsa20 + XSalsa20-Poly1305
 * (@noble/ciphers), checked against libsodium 1.0.18 in tests/unit/derp.test.ts.
 */
import { randomBytes, randomInt } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { hsalsa, xsalsa20poly1305 } from "@noble/ciphers/salsa.js";
import { x25519 } from "@noble/curves/ed25519.js";

export const FrameType = {
  ServerKey: 0x01,
  ClientInfo: 0x02,
  ServerInfo: 0x03,
  SendPacket: 0x04,
  RecvPacket: 0x05,
  KeepAlive: 0x06,
  NotePreferred: 0x07,
  PeerGone: 0x08,
  PeerPresent: 0x09,
  ForwardPacket: 0x0a,
  WatchConns: 0x10,
  ClosePeer: 0x11,
  Ping: 0x12,
  Pong: 0x13,
  Health: 0x14,
  Restarting: 0x15,
} as const;

export const PeerGoneReason = { Disconnected: 0x00, NotHere: 0x01 } as const;

export const DERP_MAGIC = Buffer.from("DERP🔑", "utf8"); // 44 45 52 50 f0 9f 94 91
export const DERP_PROTOCOL_VERSION = 2;
export const FRAME_HEADER_LEN = 5;
export const KEY_LEN = 32;
export const NONCE_LEN = 24;
export const MAX_PACKET_SIZE = 64 << 10;
/** Largest frame of any type we read (the Go client's own limit; also MaxInfoLen). */
export const MAX_FRAME_LEN = 1 << 20;
const MAX_CLIENT_INFO_LEN = 256 << 10;
const HANDSHAKE_TIMEOUT_MS = 10_000;
const KEEPALIVE_MS = 60_000;
const KEEPALIVE_JITTER_MS = 5_000;
/** Drop packets to a client whose socket already buffers this much unsent data. */
const MAX_BUFFERED_WRITE = 2 << 20;
const DISCO_MAGIC = Buffer.from("TS💬", "utf8"); // 54 53 f0 9f 92 ac
const DISCO_MIN_LEN = DISCO_MAGIC.length + KEY_LEN + NONCE_LEN;

// ---------- NaCl box (crypto_box: X25519 -> HSalsa20 -> XSalsa20-Poly1305) ----------

const SIGMA = u32le(Buffer.from("expand 32-byte k", "latin1"));

function u32le(b: Uint8Array): Uint32Array {
  const out = new Uint32Array(b.length / 4);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = dv.getUint32(i * 4, true);
  return out;
}

function bytesLE(w: Uint32Array): Uint8Array {
  const out = new Uint8Array(w.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < w.length; i++) dv.setUint32(i * 4, w[i] as number, true);
  return out;
}

/** crypto_box_beforenm: the symmetric key both ends of a NaCl box derive. Throws on a low-order point. */
export function boxSharedKey(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  if (privateKey.length !== KEY_LEN || publicKey.length !== KEY_LEN) throw new Error("box keys are 32 bytes");
  const shared = x25519.getSharedSecret(privateKey, publicKey);
  if (shared.every((b) => b === 0)) throw new Error("X25519 produced a low-order point");
  const out = new Uint32Array(8);
  // hsalsa takes words in host order; every Node target here (x86-64, arm64) is little-endian,
  // and the libsodium known-answer test in tests/unit/derp.test.ts would catch a host where not.
  hsalsa(SIGMA, u32le(shared), new Uint32Array(4), out);
  return bytesLE(out);
}

/** nonce || box, as Go's key.NodePrivate.SealTo produces; nonce is random unless given. */
export function sealBox(sharedKey: Uint8Array, plaintext: Uint8Array, nonce?: Uint8Array): Buffer {
  const n = nonce ?? randomBytes(NONCE_LEN);
  if (n.length !== NONCE_LEN) throw new Error("box nonce is 24 bytes");
  const ct = xsalsa20poly1305(sharedKey, Uint8Array.from(n)).encrypt(Uint8Array.from(plaintext));
  return Buffer.concat([n, ct]);
}

/** Opens nonce || box; null when too short or not authentic. */
export function openBox(sharedKey: Uint8Array, sealed: Uint8Array): Buffer | null {
  if (sealed.length < NONCE_LEN + 16) return null;
  try {
    const pt = xsalsa20poly1305(sharedKey, Uint8Array.from(sealed.subarray(0, NONCE_LEN))).decrypt(
      Uint8Array.from(sealed.subarray(NONCE_LEN)),
    );
    return Buffer.from(pt);
  } catch {
    return null;
  }
}

// ---------- framing ----------

export function encodeFrame(type: number, ...parts: Uint8Array[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = Buffer.allocUnsafe(FRAME_HEADER_LEN + len);
  out[0] = type;
  out.writeUInt32BE(len, 1);
  let off = FRAME_HEADER_LEN;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A FIFO of received bytes that concatenates only when a whole frame is there. */
export class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }
  /** Removes and returns the first n bytes (n <= length). */
  take(n: number): Buffer {
    if (n > this.length) throw new Error("ByteQueue underflow");
    this.length -= n;
    const first = this.chunks[0];
    if (first && first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0] as Buffer;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
  /** Byte at offset i (i < length). */
  at(i: number): number {
    for (const c of this.chunks) {
      if (i < c.length) return c[i] as number;
      i -= c.length;
    }
    throw new Error("ByteQueue index out of range");
  }
  /** Drops up to n bytes; returns how many were dropped. */
  skip(n: number): number {
    let dropped = 0;
    while (dropped < n && this.chunks.length > 0) {
      const c = this.chunks[0] as Buffer;
      const k = Math.min(c.length, n - dropped);
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
      dropped += k;
    }
    this.length -= dropped;
    return dropped;
  }
}

/** A disco message (magicsock's discovery protocol): magic, sender disco key, nonce, box. */
export function looksLikeDisco(p: Uint8Array): boolean {
  return p.length >= DISCO_MIN_LEN && DISCO_MAGIC.equals(p.subarray(0, DISCO_MAGIC.length));
}

// ---------- server ----------

class ProtocolError extends Error {}

interface Conn {
  id: number;
  socket: Duplex;
  remote: string;
  in: ByteQueue;
  /** Bytes of a discarded (unknown-type) frame still to skip. */
  skipping: number;
  state: "handshake" | "running" | "closed";
  key?: Buffer;
  keyHex?: string;
  sharedKey?: Uint8Array;
  handshakeTimer?: NodeJS.Timeout;
  keepAliveTimer?: NodeJS.Timeout;
  /** Keys (hex) this connection received packets from: it hears when they leave. */
  sawSrc: Set<string>;
  peerGoneTokens: number;
  peerGoneRefill: number;
}

interface ClientSet {
  conns: Set<Conn>;
  active: Conn;
}

export interface DerpServerOptions {
  /** 32-byte Curve25519 private key. */
  privateKey: Uint8Array;
  log?: (msg: string) => void;
  /** Keep-alive period; 60 s (+ up to 5 s jitter) unless set (tests use a short one). */
  keepAliveMs?: number;
  /**
   * Headscale's derp.server.verify_clients: only keys this returns true for may use the relay
   * (the control server admits its own nodes' keys); without it the relay is open to anyone.
   */
  verifyClient?: (nodeKey: Uint8Array) => boolean;
}

export class DerpServer {
  readonly publicKey: Uint8Array;
  private readonly privateKey: Uint8Array;
  private readonly publicKeyHex: string;
  private readonly log: (msg: string) => void;
  private readonly keepAliveMs: number | undefined;
  private readonly verifyClient: ((nodeKey: Uint8Array) => boolean) | undefined;
  private readonly clients = new Map<string, ClientSet>();
  private readonly conns = new Set<Conn>();
  /** src key hex -> connections that received from it. */
  private readonly peerGoneWatchers = new Map<string, Set<Conn>>();
  private nextId = 1;
  private closed = false;

  constructor(opts: DerpServerOptions) {
    if (!(opts.privateKey instanceof Uint8Array) || opts.privateKey.length !== KEY_LEN) {
      throw new Error("DerpServer needs a 32-byte private key");
    }
    this.privateKey = Uint8Array.from(opts.privateKey);
    this.publicKey = x25519.getPublicKey(this.privateKey);
    this.publicKeyHex = Buffer.from(this.publicKey).toString("hex");
    this.log = opts.log ?? (() => {});
    this.keepAliveMs = opts.keepAliveMs;
    this.verifyClient = opts.verifyClient;
  }

  /** For an HTTP(S) server's 'upgrade' event. Returns false if the path is not /derp. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    if (pathOf(req) !== "/derp") return false;
    socket.on("error", () => {}); // until a Conn owns it; never let an EPIPE crash the process
    const up = String(req.headers.upgrade ?? "").toLowerCase();
    if (up !== "derp" || this.closed) {
      if (up !== "derp" && up !== "") this.log(`derp: unsupported upgrade ${JSON.stringify(up)}`);
      const status = this.closed ? "503 Service Unavailable" : "426 Upgrade Required";
      const body = this.closed ? "DERP server closed\n" : "DERP requires connection upgrade\n";
      socket.end(
        `HTTP/1.1 ${status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      return true;
    }
    const fastStart = req.headers["derp-fast-start"] === "1";
    if (!fastStart) {
      socket.write(
        "HTTP/1.1 101 Switching Protocols\r\n" +
          "Upgrade: DERP\r\n" +
          "Connection: Upgrade\r\n" +
          `Derp-Version: ${DERP_PROTOCOL_VERSION}\r\n` +
          `Derp-Public-Key: ${this.publicKeyHex}\r\n\r\n`,
      );
    }
    this.accept(socket, `${req.socket?.remoteAddress ?? "?"}:${req.socket?.remotePort ?? "?"}`, head);
    return true;
  }

  /** For ordinary requests: /derp/probe, /derp/latency-check, /generate_204, and /derp without Upgrade (426). */
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean {
    const path = pathOf(req);
    switch (path) {
      case "/derp/probe":
      case "/derp/latency-check":
        if (req.method === "GET" || req.method === "HEAD") {
          res.writeHead(200, { "Access-Control-Allow-Origin": "*", "Content-Length": "0" });
          res.end();
        } else {
          plainError(res, 405, "bogus probe method");
        }
        return true;
      case "/derp":
        plainError(res, 426, "DERP requires connection upgrade");
        return true;
      case "/generate_204": {
        const headers: Record<string, string> = {
          "Cache-Control": "no-cache, no-store, must-revalidate, no-transform, max-age=0",
        };
        const challenge = req.headers["x-tailscale-challenge"];
        if (typeof challenge === "string" && challenge.length <= 64 && /^[A-Za-z0-9._:-]*$/.test(challenge)) {
          if (challenge !== "") headers["X-Tailscale-Response"] = `response ${challenge}`;
        }
        res.writeHead(204, headers);
        res.end();
        return true;
      }
      default:
        return false;
    }
  }

  /** Number of connections that completed the handshake (duplicates of one key count separately). */
  clientCount(): number {
    let n = 0;
    for (const c of this.conns) if (c.state === "running") n++;
    return n;
  }

  close(): void {
    this.closed = true;
    for (const c of [...this.conns]) this.closeConn(c, null);
  }

  // ---- connection life ----

  private accept(socket: Duplex, remote: string, head: Buffer): void {
    const c: Conn = {
      id: this.nextId++,
      socket,
      remote,
      in: new ByteQueue(),
      skipping: 0,
      state: "handshake",
      sawSrc: new Set(),
      peerGoneTokens: 3,
      peerGoneRefill: Date.now(),
    };
    this.conns.add(c);
    const s = socket as Duplex & { setNoDelay?: (v: boolean) => void; setKeepAlive?: (e: boolean, ms: number) => void };
    s.setNoDelay?.(true);
    s.setKeepAlive?.(true, 30_000);
    (socket as Duplex & { setTimeout?: (ms: number) => void }).setTimeout?.(0);
    c.handshakeTimer = setTimeout(() => this.closeConn(c, "handshake timeout"), HANDSHAKE_TIMEOUT_MS);
    c.handshakeTimer.unref?.();
    socket.on("error", (err: Error) => this.closeConn(c, `socket error: ${err.message}`));
    socket.on("close", () => this.closeConn(c, null));
    socket.on("end", () => this.closeConn(c, null));
    socket.on("data", (chunk: Buffer) => this.onData(c, chunk));
    this.write(c, encodeFrame(FrameType.ServerKey, DERP_MAGIC, this.publicKey));
    if (head && head.length > 0) this.onData(c, head);
  }

  private closeConn(c: Conn, why: string | null): void {
    if (c.state === "closed") return;
    const wasRunning = c.state === "running";
    c.state = "closed";
    if (why) this.log(`derp: ${c.remote}${c.keyHex ? ` ${c.keyHex.slice(0, 8)}` : ""}: closing: ${why}`);
    clearTimeout(c.handshakeTimer);
    clearInterval(c.keepAliveTimer);
    this.conns.delete(c);
    c.socket.destroy();
    for (const src of c.sawSrc) {
      const w = this.peerGoneWatchers.get(src);
      w?.delete(c);
      if (w && w.size === 0) this.peerGoneWatchers.delete(src);
    }
    c.sawSrc.clear();
    if (wasRunning && c.keyHex) this.unregister(c);
  }

  private register(c: Conn): void {
    const k = c.keyHex as string;
    const set = this.clients.get(k);
    if (set) {
      set.conns.add(c);
      set.active = c; // newest connection wins until another one speaks
      this.log(`derp: ${k.slice(0, 8)} connected again (${set.conns.size} connections)`);
    } else {
      this.clients.set(k, { conns: new Set([c]), active: c });
    }
  }

  private unregister(c: Conn): void {
    const k = c.keyHex as string;
    const set = this.clients.get(k);
    if (!set) return;
    set.conns.delete(c);
    if (set.conns.size > 0) {
      if (set.active === c) set.active = [...set.conns].at(-1) as Conn;
      return;
    }
    this.clients.delete(k);
    // The peer left this server: whoever heard from it hears that it is gone.
    const watchers = this.peerGoneWatchers.get(k);
    this.peerGoneWatchers.delete(k);
    if (!watchers) return;
    const frame = encodeFrame(FrameType.PeerGone, c.key as Buffer, Uint8Array.of(PeerGoneReason.Disconnected));
    for (const w of watchers) {
      w.sawSrc.delete(k);
      this.write(w, frame);
    }
  }

  private write(c: Conn, frame: Buffer): void {
    if (c.state === "closed" || c.socket.destroyed) return;
    if (c.socket.writableLength > 2 * MAX_BUFFERED_WRITE) {
      // The client stopped reading (Go: a 2 s write timeout closes such a client).
      this.closeConn(c, "client is not reading");
      return;
    }
    c.socket.write(frame);
  }

  // ---- reading ----

  private onData(c: Conn, chunk: Buffer): void {
    if (c.state === "closed") return;
    try {
      if (c.skipping > 0) {
        const k = Math.min(c.skipping, chunk.length);
        c.skipping -= k;
        chunk = chunk.subarray(k);
      }
      c.in.push(chunk);
      this.drain(c);
    } catch (err) {
      this.closeConn(c, err instanceof ProtocolError ? err.message : `internal error: ${String(err)}`);
    }
  }

  private drain(c: Conn): void {
    while (c.state !== "closed") {
      if (c.skipping > 0) {
        c.skipping -= c.in.skip(c.skipping);
        if (c.skipping > 0) return;
      }
      if (c.in.length < FRAME_HEADER_LEN) return;
      const type = c.in.at(0);
      const len = ((c.in.at(1) << 24) | (c.in.at(2) << 16) | (c.in.at(3) << 8) | c.in.at(4)) >>> 0;
      this.checkHeader(c, type, len);
      if (c.state === "running" && !KNOWN_CLIENT_FRAMES.has(type)) {
        // Unknown frame types are skipped, as the Go server does (room for protocol growth).
        this.noteActivity(c);
        c.in.skip(FRAME_HEADER_LEN);
        c.skipping = len;
        continue;
      }
      if (c.in.length < FRAME_HEADER_LEN + len) return;
      c.in.skip(FRAME_HEADER_LEN);
      const payload = c.in.take(len);
      if (c.state === "handshake") this.onClientInfo(c, payload);
      else this.onFrame(c, type, payload);
    }
  }

  /** Rejects a frame from its header alone, before buffering its payload. */
  private checkHeader(c: Conn, type: number, len: number): void {
    if (c.state === "handshake") {
      if (type !== FrameType.ClientInfo) throw new ProtocolError(`first frame type 0x${type.toString(16)}, want ClientInfo`);
      if (len < KEY_LEN + NONCE_LEN) throw new ProtocolError("short client info");
      if (len > MAX_CLIENT_INFO_LEN) throw new ProtocolError("long client info");
      return;
    }
    if (len > MAX_FRAME_LEN) throw new ProtocolError(`frame of ${len} bytes exceeds ${MAX_FRAME_LEN}`);
    switch (type) {
      case FrameType.SendPacket:
        if (len < KEY_LEN) throw new ProtocolError("short send packet frame");
        if (len - KEY_LEN > MAX_PACKET_SIZE) throw new ProtocolError(`data packet longer (${len - KEY_LEN}) than max ${MAX_PACKET_SIZE}`);
        return;
      case FrameType.NotePreferred:
        if (len !== 1) throw new ProtocolError("NotePreferred wrong size");
        return;
      case FrameType.Ping:
        if (len < 8) throw new ProtocolError(`short ping: ${len}`);
        if (len > 1000) throw new ProtocolError(`ping body too large: ${len}`);
        return;
      case FrameType.WatchConns:
      case FrameType.ClosePeer:
      case FrameType.ForwardPacket:
        // Mesh-only frames; this server has no mesh key, so no client may send them.
        throw new ProtocolError(`frame type 0x${type.toString(16)}: insufficient permissions`);
      default:
        return;
    }
  }

  private onClientInfo(c: Conn, payload: Buffer): void {
    const key = Buffer.from(payload.subarray(0, KEY_LEN));
    let shared: Uint8Array;
    try {
      shared = boxSharedKey(this.privateKey, key);
    } catch {
      throw new ProtocolError("client key is not usable");
    }
    const msg = openBox(shared, payload.subarray(KEY_LEN));
    if (!msg) throw new ProtocolError(`msgbox: cannot open len=${payload.length - KEY_LEN}`);
    let info: unknown;
    try {
      info = JSON.parse(msg.toString("utf8"));
    } catch {
      throw new ProtocolError("client info is not JSON");
    }
    if (info !== null && (typeof info !== "object" || Array.isArray(info))) throw new ProtocolError("client info is not a JSON object");
    if (this.verifyClient && !this.verifyClient(key))
      throw new ProtocolError(`client ${key.toString("hex").slice(0, 16)}… is not a node of this tailnet`);
    c.key = key;
    c.keyHex = key.toString("hex");
    c.sharedKey = shared;
    c.state = "running";
    clearTimeout(c.handshakeTimer);
    c.handshakeTimer = undefined;
    this.register(c);
    const serverInfo = Buffer.from(JSON.stringify({ version: DERP_PROTOCOL_VERSION }));
    this.write(c, encodeFrame(FrameType.ServerInfo, sealBox(shared, serverInfo)));
    const period = this.keepAliveMs ?? KEEPALIVE_MS + randomInt(KEEPALIVE_JITTER_MS);
    c.keepAliveTimer = setInterval(() => this.write(c, encodeFrame(FrameType.KeepAlive)), period);
    c.keepAliveTimer.unref?.();
  }

  private onFrame(c: Conn, type: number, payload: Buffer): void {
    this.noteActivity(c);
    switch (type) {
      case FrameType.SendPacket:
        this.onSendPacket(c, payload.subarray(0, KEY_LEN), payload.subarray(KEY_LEN));
        return;
      case FrameType.Ping:
        this.write(c, encodeFrame(FrameType.Pong, payload.subarray(0, 8)));
        return;
      case FrameType.NotePreferred:
        return; // only statistics in the Go server
      default:
        return;
    }
  }

  /** Last writer is active: a duplicate that speaks takes the packets for its key. */
  private noteActivity(c: Conn): void {
    const set = this.clients.get(c.keyHex as string);
    if (set && set.conns.size > 1) set.active = c;
  }

  private onSendPacket(c: Conn, dstKey: Buffer, packet: Buffer): void {
    const dstHex = dstKey.toString("hex");
    const dst = this.clients.get(dstHex)?.active;
    if (dst?.state !== "running") {
      if (looksLikeDisco(packet) && this.takePeerGoneToken(c)) {
        this.write(c, encodeFrame(FrameType.PeerGone, dstKey, Uint8Array.of(PeerGoneReason.NotHere)));
      }
      return;
    }
    if (dst.socket.writableLength > MAX_BUFFERED_WRITE) return; // slow reader: drop, as a full Go queue does
    const srcHex = c.keyHex as string;
    if (!dst.sawSrc.has(srcHex)) {
      dst.sawSrc.add(srcHex);
      let w = this.peerGoneWatchers.get(srcHex);
      if (!w) {
        w = new Set();
        this.peerGoneWatchers.set(srcHex, w);
      }
      w.add(dst);
    }
    this.write(dst, encodeFrame(FrameType.RecvPacket, c.key as Buffer, packet));
  }

  /** PeerGone(NotHere) replies: 1 per second, burst 3, per connection. */
  private takePeerGoneToken(c: Conn): boolean {
    const now = Date.now();
    const refill = Math.floor((now - c.peerGoneRefill) / 1000);
    if (refill > 0) {
      c.peerGoneTokens = Math.min(3, c.peerGoneTokens + refill);
      c.peerGoneRefill += refill * 1000;
    }
    if (c.peerGoneTokens <= 0) return false;
    c.peerGoneTokens--;
    return true;
  }
}

const KNOWN_CLIENT_FRAMES: ReadonlySet<number> = new Set([
  FrameType.SendPacket,
  FrameType.NotePreferred,
  FrameType.Ping,
  FrameType.WatchConns,
  FrameType.ClosePeer,
  FrameType.ForwardPacket,
]);

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? "";
  const q = url.indexOf("?");
  return q < 0 ? url : url.slice(0, q);
}

function plainError(res: ServerResponse, status: number, text: string): void {
  const body = `${text}\n`;
  res.writeHead(status, {
    "Content-Type": "text/plain; charset=utf-8",
    "X-Content-Type-Options": "nosniff",
    "Content-Length": String(Buffer.byteLength(body)),
  });
  res.end(body);
}
