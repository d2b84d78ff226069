import http2 from "node:http2";
import net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { decompress } from "fzstd";
import { formatKey, type KeyPair, nativeX25519, newKeyPair, parseKey, zeroKey } from "./keys.ts";
import { initiate, NoiseConn, RESPONSE_LEN } from "./noise.ts";
import { storedContent } from "./zstd.ts";

/**
 * The client side of the control protocol, written from the same facts as the server: key
 * discovery, the ts2021 upgrade, Noise, HTTP/2 inside it, register and map. For tests that
 * must speak the protocol in ways a real client never would (a stolen node key, a bad
 * handshake), and for the control-plane load generator. It speaks to Headscale as well.
 */

export const CLIENT_CAPVER = 138; // tailscale 1.98

export interface ControlClientOptions {
  /** e.g. http://127.0.0.1:8080 or https://10.1.99.11 */
  url: string;
  machine?: KeyPair;
  version?: number;
  /** Trust this CA (PEM) for https URLs; or skip verification with `insecure`. */
  ca?: string;
  insecure?: boolean;
  /** Connect to this address instead of resolving the URL's host (TLS still checks the name). */
  address?: string;
}

type DialOptions = { ca?: string; insecure?: boolean; address?: string };

export async function fetchServerKey(url: string, version = CLIENT_CAPVER, o: DialOptions = {}): Promise<Uint8Array> {
  const body = await rawGet(`${url.replace(/\/$/, "")}/key?v=${version}`, o);
  const j = JSON.parse(body) as { publicKey?: string };
  return parseKey("mkey", j.publicKey);
}

function dial(u: URL, o: DialOptions): Promise<Duplex> {
  const host = o.address ?? u.hostname;
  const port = Number(u.port || (u.protocol === "https:" ? 443 : 80));
  return new Promise((resolve, reject) => {
    const s =
      u.protocol === "https:"
        ? tls.connect(
            {
              host,
              port,
              servername: net.isIP(u.hostname) ? undefined : u.hostname,
              ca: o.ca,
              rejectUnauthorized: !o.insecure,
            },
            () => resolve(s),
          )
        : net.connect({ host, port, noDelay: true }, () => resolve(s));
    s.once("error", reject);
  });
}

/** A GET over HTTP/1.1 with no keep-alive; enough for /key. */
async function rawGet(url: string, o: DialOptions): Promise<string> {
  const u = new URL(url);
  const s = await dial(u, o);
  s.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString();
  const [head, ...rest] = text.split("\r\n\r\n");
  const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head ?? "")?.[1]);
  if (status !== 200) throw new Error(`GET ${url}: status ${status}`);
  let body = rest.join("\r\n\r\n");
  if (/transfer-encoding: chunked/i.test(head ?? "")) body = dechunk(body);
  return body;
}

function dechunk(s: string): string {
  let out = "";
  let rest = s;
  while (rest) {
    const i = rest.indexOf("\r\n");
    const n = Number.parseInt(rest.slice(0, i), 16);
    if (!n) break;
    out += rest.slice(i + 2, i + 2 + n);
    rest = rest.slice(i + 2 + n + 2);
  }
  return out;
}

/** Read the 101 response head, then exactly `n` more bytes, from a raw socket. */
function readUpgrade(s: Duplex, n: number): Promise<{ status: number; head: string; body: Buffer; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString();
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1]);
      const after = buf.subarray(end + 4);
      if (status !== 101 || after.length >= n || (after.length >= 3 && after[0] === 3 && after.length >= 3 + after.readUInt16BE(1))) {
        s.off("data", onData);
        s.off("error", reject);
        s.pause();
        resolve({ status, head, body: after.subarray(0, n), rest: after.subarray(n) });
      }
    };
    s.on("data", onData);
    s.once("error", reject);
    s.once("end", () =>
      reject(new Error(`connection closed during the upgrade; got ${JSON.stringify(buf.toString("latin1").slice(0, 200))}`)),
    );
  });
}

/**
 * Splits a byte stream into u32 little-endian length-prefixed frames (the map stream's
 * framing). Chunks are kept until a frame is complete, then joined once: a netmap of a
 * thousand peers arrives in hundreds of chunks, and joining at every chunk copied it
 * quadratically often.
 */
export class LengthPrefixedFrames {
  private chunks: Buffer[] = [];
  private have = 0;

  /** Add a chunk; `each` gets every frame it completes (a view, valid while `each` runs and after). */
  push(chunk: Buffer, each: (frame: Buffer) => void): void {
    this.chunks.push(chunk);
    this.have += chunk.length;
    while (this.have >= 4) {
      if (this.chunks[0]!.length < 4) this.chunks = [Buffer.concat(this.chunks, this.have)];
      const n = this.chunks[0]!.readUInt32LE(0);
      if (this.have < 4 + n) return;
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.have);
      const rest = all.subarray(4 + n);
      this.chunks = rest.length ? [rest] : [];
      this.have = rest.length;
      each(all.subarray(4, 4 + n));
    }
  }
}

/** A map message's JSON from its zstd frame: stored frames (the builtin server's) without a decompressor. */
export function zstdDecode(frame: Uint8Array): Buffer {
  const out = storedContent(frame) ?? decompress(frame);
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}

export interface MapStreamRequest {
  nodeKey: string;
  discoKey?: string;
  endpoints?: string[];
  hostname: string;
  hostinfo?: Record<string, unknown>;
}

export interface MapStream {
  status: number;
  close(): void;
  done: Promise<void>;
  error(): Error | undefined;
}

export class ControlClient {
  private constructor(
    readonly machine: KeyPair,
    readonly session: http2.ClientHttp2Session,
    readonly conn: NoiseConn,
    readonly version: number,
  ) {}

  get machineKey(): string {
    return formatKey("mkey", this.machine.publicKey);
  }

  static async connect(o: ControlClientOptions): Promise<ControlClient> {
    const version = o.version ?? CLIENT_CAPVER;
    const machine = o.machine ?? nativeX25519.newKeyPair();
    const serverKey = await fetchServerKey(o.url, version, o);
    const u = new URL(o.url);
    const sock = await dial(u, o);
    const hs = initiate(machine, serverKey, version);
    sock.write(
      `POST /ts2021 HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: tailscale-control-protocol\r\nConnection: upgrade\r\n` +
        `X-Tailscale-Handshake: ${hs.initiation.toString("base64")}\r\nContent-Length: 0\r\n\r\n`,
    );
    const up = await readUpgrade(sock, RESPONSE_LEN);
    if (up.status !== 101) {
      sock.destroy();
      throw new Error(`ts2021 upgrade refused: ${up.head.split("\r\n")[0]}`);
    }
    const keys = hs.finish(up.body);
    const conn = new NoiseConn(sock, keys, {}, up.rest, { client: true });
    sock.resume();
    const session = http2.connect(`http://${u.host}`, { createConnection: () => conn as never });
    session.on("error", () => {});
    await new Promise<void>((resolve, reject) => {
      session.once("connect", () => resolve());
      session.once("error", reject);
    });
    return new ControlClient(machine, session, conn, version);
  }

  /** POST a JSON body; resolve with status and the raw response body stream. */
  private post(path: string, body: unknown): Promise<{ status: number; stream: http2.ClientHttp2Stream }> {
    return new Promise((resolve, reject) => {
      const stream = this.session.request({ ":method": "POST", ":path": path, "content-type": "application/json" });
      stream.once("response", (h) => resolve({ status: Number(h[":status"]), stream }));
      stream.once("error", reject);
      stream.end(typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body));
    });
  }

  async postRaw(path: string, body: unknown): Promise<{ status: number; body: string }> {
    const { status, stream } = await this.post(path, body);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return { status, body: Buffer.concat(chunks).toString() };
  }

  async register(r: {
    nodeKey: string;
    authKey?: string;
    hostname: string;
    followup?: string;
    routes?: string[];
    /** A whole Hostinfo (e.g. one a real tailscaled sent); Hostname and routes above still apply. */
    hostinfo?: Record<string, unknown>;
  }): Promise<Record<string, unknown>> {
    const res = await this.postRaw("/machine/register", {
      Version: this.version,
      NodeKey: r.nodeKey,
      OldNodeKey: zeroKey("nodekey"),
      Auth: r.authKey ? { AuthKey: r.authKey } : null,
      Expiry: "0001-01-01T00:00:00Z",
      Followup: r.followup ?? "",
      Hostinfo: { OS: "linux", ...r.hostinfo, Hostname: r.hostname, ...(r.routes ? { RoutableIPs: r.routes } : {}) },
    });
    if (res.status !== 200) throw new Error(`register: status ${res.status}: ${res.body.trim()}`);
    return JSON.parse(res.body);
  }

  /**
   * Open the map long-poll; `onMessage` gets each decoded MapResponse. Resolves when the
   * response headers arrive with the status; `done` settles when the stream ends.
   */
  mapStream(
    r: MapStreamRequest,
    onMessage: (m: Record<string, unknown>) => void,
    /** Each message's size on the wire (length prefix + frame, as the server sent it), for benchmarks. */
    onFrameBytes?: (n: number) => void,
  ): Promise<MapStream> {
    return this.mapStreamFrames(r, (frame) => {
      onFrameBytes?.(4 + frame.length);
      onMessage(JSON.parse(zstdDecode(frame).toString()));
    });
  }

  /**
   * The same long-poll, but each message is handed over as the zstd frame it came in,
   * undecoded (zstdDecode gives its JSON): for a reader that wants only a few fields of each
   * message, or has read the same frame before, like the load generator.
   */
  async mapStreamFrames(r: MapStreamRequest, onFrame: (zstdFrame: Buffer) => void): Promise<MapStream> {
    const { status, stream } = await this.post("/machine/map", {
      Version: this.version,
      NodeKey: r.nodeKey,
      DiscoKey: r.discoKey ?? formatKey("discokey", nativeX25519.newKeyPair().publicKey),
      Endpoints: r.endpoints ?? [],
      Hostinfo: { OS: "linux", ...r.hostinfo, Hostname: r.hostname },
      Stream: true,
      KeepAlive: true,
      Compress: "zstd",
    });
    let failure: Error | undefined;
    const frames = new LengthPrefixedFrames();
    // Events rather than an async iterator: a promise per chunk cost the load generator more than the chunk.
    const done = new Promise<void>((resolve) => {
      stream.on("data", (c: Buffer) => {
        if (failure) return;
        try {
          frames.push(c, onFrame);
        } catch (e) {
          // A frame that does not decode ends this stream: say so rather than go quiet.
          failure = e as Error;
          stream.close();
        }
      });
      stream.on("error", (e) => {
        failure ??= e;
      });
      stream.on("close", () => resolve());
    });
    return { status, close: () => stream.close(), done, error: () => failure };
  }

  /** A "lite" map update (Stream false, OmitPeers true), as tailscaled sends when its endpoints or Hostinfo change. */
  async liteUpdate(r: {
    nodeKey: string;
    discoKey: string;
    endpoints: string[];
    hostname: string;
    hostinfo?: Record<string, unknown>;
  }): Promise<number> {
    const res = await this.postRaw("/machine/map", {
      Version: this.version,
      NodeKey: r.nodeKey,
      DiscoKey: r.discoKey,
      Endpoints: r.endpoints,
      EndpointTypes: r.endpoints.map(() => 1),
      Hostinfo: { OS: "linux", ...r.hostinfo, Hostname: r.hostname },
      OmitPeers: true,
      KeepAlive: true,
      Compress: "zstd",
    });
    return res.status;
  }

  close(): void {
    this.session.destroy();
    this.conn.destroy();
  }
}

export { newKeyPair };
