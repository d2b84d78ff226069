/**
 * A small DERP client: enough for tests and a load generator to talk to any DERP server
 * (ours or Tailscale's derper) over plain HTTP or TLS. Protocol facts: see the top of derp.ts.
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import { x25519 } from "@noble/curves/ed25519.js";
import {
  ByteQueue,
  boxSharedKey,
  DERP_MAGIC,
  DERP_PROTOCOL_VERSION,
  encodeFrame,
  FRAME_HEADER_LEN,
  FrameType,
  KEY_LEN,
  MAX_FRAME_LEN,
  MAX_PACKET_SIZE,
  openBox,
  sealBox,
} from "./derp.ts";

export type DerpMessage =
  | { type: "packet"; source: Buffer; data: Buffer }
  | { type: "peerGone"; peer: Buffer; reason: number }
  | { type: "ping"; data: Buffer }
  | { type: "pong"; data: Buffer }
  | { type: "keepAlive" }
  | { type: "health"; problem: string }
  | { type: "other"; frameType: number; payload: Buffer };

export interface UpgradeOptions {
  /** http://host:port/derp or https://host:port/derp */
  url: string;
  /** Send Derp-Fast-Start: 1 and expect no HTTP response. */
  fastStart?: boolean;
  /** Extra TLS options (e.g. rejectUnauthorized: false) for https URLs. */
  tls?: tls.ConnectionOptions;
  headers?: Record<string, string>;
  timeoutMs?: number;
  /** Connect to this address instead of resolving the URL's host (TLS and Host still use the URL's name). */
  address?: string;
}

export interface Upgraded {
  socket: net.Socket;
  /** Status line and lower-cased headers of the HTTP response; empty with fastStart. */
  status: string;
  headers: Record<string, string>;
  /** Bytes that arrived after the HTTP response. */
  rest: Buffer;
}

/**
 * Opens a connection and performs DERP's HTTP upgrade. Rejects on a non-101 answer.
 * The socket comes back paused: attach a 'data' listener, then call socket.resume().
 */
export function derpUpgrade(opts: UpgradeOptions): Promise<Upgraded> {
  const u = new URL(opts.url);
  const https = u.protocol === "https:";
  const port = Number(u.port || (https ? 443 : 80));
  const name = u.hostname.replace(/^\[|\]$/g, "");
  const host = opts.address ?? name;
  return new Promise((resolve, reject) => {
    const socket = https
      ? tls.connect({ host, port, servername: net.isIP(name) ? undefined : name, ...opts.tls })
      : net.connect({ host, port });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => fail(new Error("DERP upgrade timed out")), opts.timeoutMs ?? 10_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once("error", fail);
    socket.once("close", () => fail(new Error("connection closed during DERP upgrade")));
    socket.once(https ? "secureConnect" : "connect", () => {
      const lines = [
        `GET ${u.pathname}${u.search} HTTP/1.1`,
        `Host: ${u.host}`,
        "Upgrade: DERP",
        "Connection: Upgrade",
        ...(opts.fastStart ? ["Derp-Fast-Start: 1"] : []),
        ...Object.entries(opts.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
      ];
      socket.write(`${lines.join("\r\n")}\r\n\r\n`);
      if (opts.fastStart) done("", {}, Buffer.alloc(0));
    });
    const done = (status: string, headers: Record<string, string>, rest: Buffer) => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      socket.removeAllListeners("close");
      socket.removeListener("data", onData);
      socket.pause(); // the caller resumes when it listens
      resolve({ socket, status, headers, rest });
    };
    const onData = (chunk: Buffer) => {
      if (opts.fastStart) return;
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) {
        if (buf.length > 16 << 10) fail(new Error("HTTP response header too long"));
        return;
      }
      const [status = "", ...lines] = buf.subarray(0, end).toString("latin1").split("\r\n");
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(":");
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      if (!/^HTTP\/1\.[01] 101 /.test(status)) {
        // Wait for the body the refusal announced (it says why), unless the server hangs up first.
        const body = buf.subarray(end + 4);
        const length = Number(headers["content-length"] ?? 0);
        const refused = () => new Error(`DERP upgrade refused: ${status}: ${body.toString("utf8").trim()}`.replace(/: $/, ""));
        if (body.length < length && length <= 16 << 10) {
          socket.removeAllListeners("close");
          socket.once("close", () => fail(refused()));
          return;
        }
        fail(refused());
        return;
      }
      done(status, headers, buf.subarray(end + 4));
    };
    socket.on("data", onData);
  });
}

export interface DerpClientOptions extends UpgradeOptions {
  /** 32-byte Curve25519 private key (the node key); random if absent. */
  privateKey?: Uint8Array;
  /** Extra ClientInfo JSON fields; version 2 is always sent. */
  info?: Record<string, unknown>;
}

export class DerpClient {
  readonly publicKey: Buffer;
  readonly serverPublicKey: Buffer;
  /** The opened ServerInfo JSON. */
  readonly serverInfo: Record<string, unknown>;
  /** HTTP response headers of the upgrade (empty with fastStart). */
  readonly upgradeHeaders: Record<string, string>;
  readonly socket: net.Socket;
  private readonly in: ByteQueue;
  private readonly queue: DerpMessage[] = [];
  private readonly waiters: { resolve: (m: DerpMessage) => void; reject: (e: Error) => void }[] = [];
  private error: Error | null = null;
  /** Resolves when the connection is gone. */
  readonly closed: Promise<void>;

  private constructor(
    socket: net.Socket,
    inq: ByteQueue,
    keys: { pub: Buffer; server: Buffer },
    info: Record<string, unknown>,
    headers: Record<string, string>,
  ) {
    this.socket = socket;
    this.in = inq;
    this.publicKey = keys.pub;
    this.serverPublicKey = keys.server;
    this.serverInfo = info;
    this.upgradeHeaders = headers;
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => {
      this.in.push(chunk);
      this.pump();
    });
    socket.on("error", (err) => this.fail(err));
    socket.on("close", () => this.fail(new Error("DERP connection closed")));
    this.pump();
    socket.resume();
  }

  static async connect(opts: DerpClientOptions): Promise<DerpClient> {
    const priv = opts.privateKey ?? Uint8Array.from(randomBytes(32));
    const pub = Buffer.from(x25519.getPublicKey(priv));
    const up = await derpUpgrade(opts);
    const { socket } = up;
    const inq = new ByteQueue();
    inq.push(up.rest);
    try {
      const readFrame = frameReader(socket, inq, opts.timeoutMs ?? 10_000);
      const sk = await readFrame();
      if (sk.type !== FrameType.ServerKey || sk.payload.length < DERP_MAGIC.length + KEY_LEN) {
        throw new Error("invalid server greeting");
      }
      if (!sk.payload.subarray(0, DERP_MAGIC.length).equals(DERP_MAGIC)) throw new Error("bad DERP magic");
      const server = Buffer.from(sk.payload.subarray(DERP_MAGIC.length, DERP_MAGIC.length + KEY_LEN));
      const advertised = advertisedKeyHex(up.headers);
      if (advertised !== undefined && advertised !== server.toString("hex")) {
        throw new Error("ServerKey frame and Derp-Public-Key header disagree");
      }
      const shared = boxSharedKey(priv, server);
      const info = Buffer.from(JSON.stringify({ version: DERP_PROTOCOL_VERSION, CanAckPings: false, ...opts.info }));
      socket.write(encodeFrame(FrameType.ClientInfo, pub, sealBox(shared, info)));
      const si = await readFrame();
      if (si.type !== FrameType.ServerInfo) throw new Error(`expected ServerInfo, got frame 0x${si.type.toString(16)}`);
      const msg = openBox(shared, si.payload);
      if (!msg) throw new Error("cannot open ServerInfo box");
      const serverInfo = JSON.parse(msg.toString("utf8")) as Record<string, unknown>;
      return new DerpClient(socket, inq, { pub, server }, serverInfo, up.headers);
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }

  send(dst: Uint8Array, data: Uint8Array): void {
    if (dst.length !== KEY_LEN) throw new Error("destination key is 32 bytes");
    if (data.length > MAX_PACKET_SIZE) throw new Error(`packet too big: ${data.length}`);
    this.socket.write(encodeFrame(FrameType.SendPacket, dst, data));
  }

  ping(data: Uint8Array = randomBytes(8)): void {
    this.socket.write(encodeFrame(FrameType.Ping, data));
  }

  notePreferred(preferred: boolean): void {
    this.socket.write(encodeFrame(FrameType.NotePreferred, Uint8Array.of(preferred ? 1 : 0)));
  }

  /** Writes bytes as they are (for tests of malformed input). */
  writeRaw(b: Uint8Array): void {
    this.socket.write(b);
  }

  /** The next message; rejects when the connection is closed or after timeoutMs. */
  recv(timeoutMs = 10_000): Promise<DerpMessage> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      const w = {
        resolve: (msg: DerpMessage) => {
          clearTimeout(t);
          resolve(msg);
        },
        reject: (e: Error) => {
          clearTimeout(t);
          reject(e);
        },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no DERP message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Waits for a message of one type, dropping others (e.g. keep-alives). */
  async recvType<T extends DerpMessage["type"]>(type: T, timeoutMs = 10_000): Promise<Extract<DerpMessage, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.recv(Math.max(1, deadline - Date.now()));
      if (m.type === type) return m as Extract<DerpMessage, { type: T }>;
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private deliver(m: DerpMessage): void {
    const w = this.waiters.shift();
    if (w) w.resolve(m);
    else this.queue.push(m);
  }

  private fail(err: Error): void {
    if (this.error) return;
    this.error = err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private pump(): void {
    for (;;) {
      const f = takeFrame(this.in);
      if (f === "need-more") return;
      if (f === "too-big") {
        this.fail(new Error("frame larger than 1 MiB from server"));
        this.socket.destroy();
        return;
      }
      const p = f.payload;
      switch (f.type) {
        case FrameType.RecvPacket:
          if (p.length >= KEY_LEN) this.deliver({ type: "packet", source: p.subarray(0, KEY_LEN), data: p.subarray(KEY_LEN) });
          break;
        case FrameType.PeerGone:
          if (p.length >= KEY_LEN)
            this.deliver({ type: "peerGone", peer: p.subarray(0, KEY_LEN), reason: p.length > KEY_LEN ? (p[KEY_LEN] as number) : 0 });
          break;
        case FrameType.Ping:
          if (p.length >= 8) {
            this.socket.write(encodeFrame(FrameType.Pong, p.subarray(0, 8)));
            this.deliver({ type: "ping", data: p.subarray(0, 8) });
          }
          break;
        case FrameType.Pong:
          if (p.length >= 8) this.deliver({ type: "pong", data: p.subarray(0, 8) });
          break;
        case FrameType.KeepAlive:
          this.deliver({ type: "keepAlive" });
          break;
        case FrameType.Health:
          this.deliver({ type: "health", problem: p.toString("utf8") });
          break;
        default:
          this.deliver({ type: "other", frameType: f.type, payload: p });
      }
    }
  }
}

/**
 * The server key of the 101 answer's Derp-Public-Key header, as bare lower-case hex. Tailscale's
 * derper writes bare hex; Headscale's embedded DERP writes the typed form "nodekey:<hex>".
 */
export function advertisedKeyHex(headers: Record<string, string>): string | undefined {
  const v = headers["derp-public-key"];
  return v === undefined ? undefined : v.replace(/^nodekey:/i, "").toLowerCase();
}

export interface DerpGreeting {
  /** The status line of the 101 answer. */
  status: string;
  /** Derp-Version of the 101 answer, if it had one. */
  version?: string;
  /** The server's public key, from its first frame (ServerKey). */
  serverKey: Buffer;
}

/**
 * The DERP upgrade up to the server's first frame, then hangs up: the part of the handshake
 * any client may do (a server with verify_clients refuses an unknown key after ClientInfo). A
 * DERP server answers 101 and sends ServerKey = magic + its 32-byte key, matching the key the
 * 101 advertised. Rejects with what came instead.
 */
export async function derpGreeting(opts: UpgradeOptions): Promise<DerpGreeting> {
  const up = await derpUpgrade(opts);
  const q = new ByteQueue();
  q.push(up.rest);
  try {
    const first = await frameReader(up.socket, q, opts.timeoutMs ?? 10_000)();
    const magic = first.payload.subarray(0, DERP_MAGIC.length);
    if (first.type !== FrameType.ServerKey || first.payload.length < DERP_MAGIC.length + KEY_LEN || !magic.equals(DERP_MAGIC))
      throw new Error(`the first frame after the 101 is not a DERP ServerKey (type 0x${first.type.toString(16)})`);
    const serverKey = Buffer.from(first.payload.subarray(DERP_MAGIC.length, DERP_MAGIC.length + KEY_LEN));
    const advertised = advertisedKeyHex(up.headers);
    if (advertised !== undefined && advertised !== serverKey.toString("hex"))
      throw new Error("the ServerKey frame and the Derp-Public-Key header name different keys");
    return { status: up.status, version: up.headers["derp-version"], serverKey };
  } finally {
    up.socket.destroy();
  }
}

function takeFrame(q: ByteQueue): { type: number; payload: Buffer } | "need-more" | "too-big" {
  if (q.length < FRAME_HEADER_LEN) return "need-more";
  const len = ((q.at(1) << 24) | (q.at(2) << 16) | (q.at(3) << 8) | q.at(4)) >>> 0;
  if (len > MAX_FRAME_LEN) return "too-big";
  if (q.length < FRAME_HEADER_LEN + len) return "need-more";
  const type = q.at(0);
  q.skip(FRAME_HEADER_LEN);
  return { type, payload: q.take(len) };
}

/** Reads whole frames during the handshake, before the client installs its own data handler. */
function frameReader(socket: net.Socket, q: ByteQueue, timeoutMs: number): () => Promise<{ type: number; payload: Buffer }> {
  return () =>
    new Promise((resolve, reject) => {
      const cleanup = () => {
        socket.pause();
        clearTimeout(timer);
        socket.off("data", onData);
        socket.off("close", onClose);
        socket.off("error", onError);
      };
      const check = () => {
        const f = takeFrame(q);
        if (f === "need-more") return;
        cleanup();
        if (f === "too-big") reject(new Error("frame larger than 1 MiB from server"));
        else resolve(f);
      };
      const onData = (chunk: Buffer) => {
        q.push(chunk);
        check();
      };
      const onClose = () => {
        cleanup();
        reject(new Error("DERP connection closed during handshake"));
      };
      const onError = (err: Error) => {
        cleanup();
        reject(err);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error("DERP handshake timed out"));
      }, timeoutMs);
      socket.on("data", onData);
      socket.once("close", onClose);
      socket.once("error", onError);
      socket.resume();
      check();
    });
}
