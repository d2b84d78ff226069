import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import http2 from "node:http2";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import type { AcmeCertificates } from "./acme.ts";
import { startAdmin } from "./admin.ts";
import type { ControlConfig } from "./config.ts";
import { DerpServer } from "./derp.ts";
import { formatKey, type KeyPair, keyPairFrom, newKeyPair, parseKey, zeroKey } from "./keys.ts";
import { derpMap, fullMapJson, type MapperConfig, nodeView, userProfiles, type ViewJson } from "./mapper.ts";
import { boundPort, startMetrics } from "./metrics.ts";
import { errorFrame, HandshakeError, NoiseConn, respond } from "./noise.ts";
import { escapeHtml, OidcError, type OidcHost, OidcLogins } from "./oidc.ts";
import { PendingLogins } from "./pending.ts";
import { type NodeRec, StateStore, writeFileAtomic } from "./store.ts";
import { startStun } from "./stun.ts";
import { loginName, Tailnet, TailnetError } from "./tailnet.ts";
import { decodeMap, decodeRegister, type MapRequest, type RegisterRequest, RequestError } from "./validate.ts";
import { mapFrameJson } from "./zstd.ts";

/** The oldest client we accept: capver 102 is tailscale 1.70. */
export const MIN_CAPVER = 102;
const KEEPALIVE_MS = () => 50_000 + Math.floor(Math.random() * 9_000);
const UPGRADE_PROTOCOL = "tailscale-control-protocol";
const KEEPALIVE_JSON = '{"KeepAlive":true}';

export type Log = (msg: string) => void;

/** Load a private key from the state dir, or create it (mode 0600) on first start. */
export function persistentKey(dir: string, file: string): KeyPair {
  const path = join(dir, file);
  if (existsSync(path)) return keyPairFrom(parseKey("privkey", readFileSync(path, "utf8").trim()));
  const kp = newKeyPair();
  writeFileAtomic(path, `${formatKey("privkey", kp.privateKey)}\n`, 0o600);
  return kp;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Read a whole request body, refusing it beyond `limit` bytes (413) or after `timeoutMs` (408). */
async function readBody(req: http2.Http2ServerRequest, limit: number, timeoutMs: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > limit) throw new HttpError(413, `request body over ${limit} bytes`);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HttpError(408, `request body not complete within ${timeoutMs} ms`)), timeoutMs);
  });
  const read = (async () => {
    const parts: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw new HttpError(413, `request body over ${limit} bytes`);
      parts.push(chunk);
    }
    return Buffer.concat(parts);
  })();
  try {
    return await Promise.race([read, late]);
  } finally {
    clearTimeout(timer);
    read.catch(() => {});
  }
}

function parseJson(body: Buffer): Record<string, unknown> {
  try {
    const v = JSON.parse(body.toString("utf8"));
    if (v && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {}
  throw new HttpError(400, "body is not a JSON object");
}

/** A live map stream: one per node; a newer stream from the same node ends the older one. */
interface MapSession {
  nodeId: number;
  compress: boolean;
  /** Under an ACL policy: what this stream's client was last sent (its filter as JSON, its peers). */
  sent?: SentState;
  /** Write one framed message (see `encode`). */
  write(frame: Buffer): void;
  end(): void;
}

/** A map message (JSON text) framed for a stream: zstd when the client asked for it. */
function encode(json: string, compress: boolean): Buffer {
  return compress ? mapFrameJson(json) : lengthPrefixed(Buffer.from(json));
}

/** The Noise peer a request came over: its machine key, and a way to drop its connection. */
interface NoisePeer {
  machineKey: string;
  close(why: string): void;
  /** Set when the client stopped answering PINGs: it is gone, no reconnect is worth waiting for. */
  dead?: boolean;
}

export class ControlServer {
  readonly tailnet: Tailnet;
  readonly noiseKey: KeyPair;
  readonly derp: DerpServer | undefined;
  private readonly mapper: MapperConfig;
  private readonly sessions = new Map<number, MapSession>();
  /** Nodes whose map stream ended, waiting out limits.offline_grace for a new one before going offline. */
  private readonly goingOffline = new Map<number, NodeJS.Timeout>();
  /** Fires when the soonest key expiry passes (scheduleExpiryNotice). */
  private expiryNotice: NodeJS.Timeout | undefined;
  /** Key expiries up to this moment have been announced (the server's start: stored ones went out in full maps). */
  private lastExpiryCheck = new Date();
  /** Ephemeral nodes gone offline, deleted when config.ephemeralInactivityTimeout is over unless they come back. */
  private readonly ephemeralDeletes = new Map<number, NodeJS.Timeout>();
  private readonly pending: PendingLogins;
  /** Interactive logins through the identity provider, when the config has `oidc:`. */
  private readonly oidc: OidcLogins | undefined;
  private readonly sockets = new Set<Duplex>();
  private listener: http.Server | undefined;
  private admin: http.Server | undefined;
  private metrics: http.Server | undefined;
  private stun: { port: number; close(): Promise<void> } | undefined;
  private acme: AcmeCertificates | undefined;
  /** Each node's serialised view, shared by every map that carries it; dropped when it changes. */
  private readonly viewCache = new Map<number, string>();
  private changedBatch = new Set<number>();
  private removedBatch = new Set<number>();
  private flushScheduled = false;
  /** Counters for /metrics. */
  readonly stats = {
    mapBytes: 0,
    openStreams: 0,
    noiseConnections: 0,
    registers: new Map<string, number>(),
    refused: new Map<string, number>(),
  };
  /** Sees every request body inside Noise before it is decoded (tests record real clients' requests). */
  onRequestBody: ((path: string, body: Buffer) => void) | undefined;

  constructor(
    readonly config: ControlConfig,
    private readonly log: Log = (m) => console.log(m),
  ) {
    const store = new StateStore(config.stateDir, this.log);
    this.pending = new PendingLogins(config.limits.maxPendingLogins, config.limits.pendingLoginTtl);
    if (config.oidc) this.oidc = new OidcLogins(config.oidc, this.oidcHost());
    this.noiseKey = persistentKey(config.stateDir, "noise.key");
    this.tailnet = new Tailnet(store, {
      v4Prefix: config.prefixes.v4,
      v6Prefix: config.prefixes.v6,
      baseDomain: config.dns.baseDomain,
      nodeExpiry: config.nodeExpiry,
      log: this.log,
    });
    const derpKey = persistentKey(config.stateDir, "derp.key");
    if (config.derp.enabled) {
      this.derp = new DerpServer({
        privateKey: derpKey.privateKey,
        log: (m) => this.log(`derp: ${m}`),
        verifyClient: config.derp.verifyClients ? (k) => this.isNodeKey(k) : undefined,
      });
    }
    this.mapper = {
      baseDomain: config.dns.baseDomain,
      domain: config.dns.baseDomain,
      derp: config.derp.region,
      extraRegions: config.derp.extraRegions,
      nameservers: config.dns.nameservers,
    };
    this.tailnet.onChange((changed, removed) => {
      this.scheduleExpiryNotice();
      for (const id of changed) {
        this.changedBatch.add(id);
        this.viewCache.delete(id);
      }
      for (const id of removed) {
        this.removedBatch.add(id);
        this.viewCache.delete(id);
      }
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flushChanges());
      }
    });
  }

  async start(): Promise<{ port: number; stunPort?: number; metricsPort?: number; acmeHttpPort?: number }> {
    const { host, port, tls } = this.config.listen;
    this.scheduleExpiryNotice();
    const handler = (req: IncomingMessage, res: ServerResponse) => this.onHttp(req, res);
    // Node checks headersTimeout only this often (30 s by default).
    const opts = { connectionsCheckingInterval: Math.min(1_000, this.config.limits.handshakeTimeout) };
    const tlsOpts = { ...opts, handshakeTimeout: this.config.limits.handshakeTimeout };
    if (this.config.acme) {
      // Go programs such as Headscale take the roots for the CA's API from SSL_CERT_FILE: so does this one.
      const roots = process.env.SSL_CERT_FILE;
      // Loaded only here: the bundle keeps acme-client in its own chunk, off the CLI's path.
      const { AcmeCertificates } = await import("./acme.ts");
      this.acme = new AcmeCertificates(this.config.acme, this.log, roots && existsSync(roots) ? readFileSync(roots) : undefined);
    }
    const server = this.acme
      ? https.createServer({ ...tlsOpts, SNICallback: this.acme.sniCallback }, handler)
      : tls
        ? https.createServer({ ...tlsOpts, cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, handler)
        : http.createServer(opts, handler);
    // Upgraded connections (ts2021, DERP) leave the HTTP server: these bound only the time to a
    // complete request head, and how many connections may be open at all.
    server.requestTimeout = 0;
    server.headersTimeout = this.config.limits.handshakeTimeout;
    server.maxConnections = this.config.limits.maxConnections;
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on("connection", (s: Duplex) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    server.on("clientError", (_e, socket: Duplex) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    this.listener = server;
    const bound = (server.address() as AddressInfo).port;
    const acmeHttpPort = this.acme ? (await this.acme.start()).httpPort : undefined;
    if (this.config.derp.enabled && this.config.derp.stunListen) {
      this.stun = await startStun(this.config.derp.stunListen);
    }
    this.admin = await startAdmin(this, this.config.adminSocket);
    if (this.config.metricsListen) this.metrics = await startMetrics(this, this.config.metricsListen);
    this.log(
      `listening on ${tls || this.acme ? "https" : "http"}://${host}:${bound} (server URL ${this.config.serverUrl}); ` +
        `noise key ${formatKey("mkey", this.noiseKey.publicKey).slice(0, 17)}…; ` +
        `${this.tailnet.nodes().length} node(s), ${this.tailnet.users().length} user(s) in ${this.config.stateDir}; ` +
        `admin socket ${this.config.adminSocket}` +
        (this.metrics ? `; metrics on http://${this.config.metricsListen!.host}:${boundPort(this.metrics)}/metrics` : "") +
        (this.acme ? `; ACME HTTP-01 on port ${acmeHttpPort} for ${this.config.acme!.hostname}` : ""),
    );
    return { port: bound, stunPort: this.stun?.port, metricsPort: this.metrics && boundPort(this.metrics), acmeHttpPort };
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => (this.admin ? this.admin.close(() => r()) : r()));
    await new Promise<void>((r) => (this.metrics ? this.metrics.close(() => r()) : r()));
    rmSync(this.config.adminSocket, { force: true });
    for (const s of this.sessions.values()) s.end();
    this.sessions.clear();
    for (const t of this.goingOffline.values()) clearTimeout(t);
    this.goingOffline.clear();
    for (const t of this.ephemeralDeletes.values()) clearTimeout(t);
    this.ephemeralDeletes.clear();
    clearTimeout(this.expiryNotice);
    this.derp?.close();
    await this.stun?.close();
    await this.acme?.close();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.listener ? this.listener.close(() => r()) : r()));
    await this.tailnet.flush();
  }

  // ---- plain HTTP(S): /key, health, DERP probes, the interactive login page ----

  private onHttp(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://x");
    try {
      if (this.derp?.handleRequest(req, res)) return;
      if (req.method === "GET" && url.pathname === "/key") {
        const v = Number(url.searchParams.get("v"));
        if (!url.searchParams.has("v") || !Number.isInteger(v)) throw new HttpError(400, "missing or bad ?v=<capability version>");
        return json(res, 200, { legacyPublicKey: zeroKey("mkey"), publicKey: formatKey("mkey", this.noiseKey.publicKey) });
      }
      if (req.method === "GET" && (url.pathname === "/health" || url.pathname === "/healthz")) {
        return json(res, 200, { status: "pass" });
      }
      if (req.method === "GET" && url.pathname === "/derpmap") {
        return json(res, 200, derpMap(this.mapper.derp, this.mapper.extraRegions));
      }
      if (this.oidc && this.onOidc(this.oidc, url.pathname, req, res)) return;
      // An upgrade request that arrives as a plain one lost its headers on the way, usually in a proxy.
      if (req.method === "POST" && url.pathname === "/ts2021") {
        throw new HttpError(
          426,
          "ts2021 needs Upgrade: tailscale-control-protocol and Connection: upgrade; a proxy in between may drop them",
        );
      }
      const reg = /^\/register\/([A-Za-z0-9_-]+)$/.exec(url.pathname);
      if (req.method === "GET" && reg && this.pending.get(reg[1]!)) {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
        res.end(
          `<!doctype html><title>Register node</title><h1>Register this node</h1>` +
            `<p>On the control server run:</p><pre>headscale nodes register --user USERNAME --key ${reg[1]}</pre>\n`,
        );
        return;
      }
      throw new HttpError(404, "not found");
    } catch (e) {
      const status = e instanceof HttpError ? e.status : 500;
      if (!res.headersSent) json(res, status, { error: (e as Error).message });
      else res.destroy();
    }
  }

  private oidcHost(): OidcHost {
    return {
      serverUrl: this.config.serverUrl,
      pendingHostname: (id) => {
        const p = this.pending.get(id);
        return p ? String(p.hostinfo.Hostname ?? "") : undefined;
      },
      userFor: (identity) => {
        const u = this.tailnet.oidcUser(identity);
        return { id: u.id, shown: u.displayName || loginName(u) };
      },
      approve: async (id, userId) => void (await this.approveLogin(id, userId, "oidc")),
      log: (m) => this.log(m),
    };
  }

  /** The OIDC login's three pages (oidc.ts); false for any other request. */
  private onOidc(oidc: OidcLogins, path: string, req: IncomingMessage, res: ServerResponse): boolean {
    const reg = /^\/register\/([A-Za-z0-9_-]+)$/.exec(path);
    const confirm = /^\/register\/confirm\/([A-Za-z0-9_-]+)$/.exec(path);
    let done: Promise<void>;
    if (req.method === "GET" && reg && this.pending.get(reg[1]!)) done = oidc.start(reg[1]!, res);
    else if (req.method === "GET" && path === "/oidc/callback") done = oidc.callback(req, res);
    else if (req.method === "POST" && confirm) done = oidc.confirm(confirm[1]!, req, res);
    else return false;
    done.catch((e: Error) => {
      const status = e instanceof OidcError ? e.status : 500;
      if (!(e instanceof OidcError)) this.log(`oidc: ${e.message}`);
      if (res.headersSent) return void res.destroy();
      res.writeHead(status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
      res.end(`<!doctype html><title>Login failed</title><h2>Login failed</h2><p>${escapeHtml(e.message)}</p>\n`);
    });
    return true;
  }

  // ---- POST /ts2021: HTTP upgrade, Noise IK handshake, then HTTP/2 inside Noise ----

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", () => socket.destroy());
    if (this.derp?.handleUpgrade(req, socket, head)) return;
    const url = new URL(req.url ?? "/", "http://x");
    const refuse = (status: number, why: string) => {
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${why}\n`);
    };
    if (url.pathname !== "/ts2021") return refuse(404, "not found");
    const upgrade = String(req.headers.upgrade ?? "").toLowerCase();
    // Browser/WASM clients speak ts2021 over WebSocket; no such client is in the lab.
    if (upgrade === "websocket") return refuse(501, "ts2021 over WebSocket is not implemented by this server");
    if (upgrade !== UPGRADE_PROTOCOL) return refuse(400, "unsupported upgrade protocol");
    const b64 = String(req.headers["x-tailscale-handshake"] ?? "");
    const init = Buffer.from(b64, "base64");
    if (!b64 || init.length === 0) return refuse(400, "missing X-Tailscale-Handshake");

    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${UPGRADE_PROTOCOL}\r\nConnection: upgrade\r\n\r\n`);
    let hs: ReturnType<typeof respond>;
    try {
      hs = respond(this.noiseKey, init);
      if (hs.result.version < MIN_CAPVER) throw new HandshakeError(`unsupported client version ${hs.result.version}`);
    } catch (e) {
      this.log(`ts2021 from ${req.socket.remoteAddress}: ${(e as Error).message}`);
      socket.end(errorFrame(e instanceof HandshakeError ? e.message : "handshake failed"));
      return;
    }
    socket.write(hs.response);
    this.serveNoise(
      socket,
      new NoiseConn(socket, hs.result, { machineKey: hs.result.machineKey, version: hs.result.version }, head),
      formatKey("mkey", hs.result.machineKey),
    );
  }

  /**
   * HTTP/2 inside one Noise connection, with its bounds: streams per connection, an idle
   * timeout when no stream is open, TCP keepalive, and an HTTP/2 PING that must be answered in
   * time, so a vanished client (cut cable, stopped process) is noticed within seconds.
   */
  private serveNoise(socket: Duplex, conn: NoiseConn, machineKey: string): void {
    const L = this.config.limits;
    // Small request/response frames inside Noise: without TCP_NODELAY each waits on delayed ACKs.
    const tcp = socket as Partial<Socket>;
    tcp.setNoDelay?.(true);
    tcp.setTimeout?.(0);
    if (L.tcpKeepalive) tcp.setKeepAlive?.(true, L.tcpKeepalive);
    conn.on("error", () => {});
    const peer: NoisePeer = {
      machineKey,
      close: (why) => {
        if (conn.destroyed) return;
        this.log(`closing the connection of ${machineKey.slice(0, 17)}…: ${why}`);
        conn.destroy();
      },
    };
    const h2 = http2.createServer({ settings: { maxConcurrentStreams: L.maxStreamsPerConnection } });
    h2.setTimeout(0);
    h2.on("session", (session: http2.ServerHttp2Session) => this.watchSession(session, peer));
    h2.on("request", (r: http2.Http2ServerRequest, w: http2.Http2ServerResponse) => {
      this.onNoiseRequest(peer, r, w).catch((e) => this.failRequest(r, w, e));
    });
    h2.on("sessionError", () => conn.destroy());
    h2.emit("connection", conn);
  }

  /** Idle timeout (no open stream) and PING liveness for one HTTP/2 session. */
  private watchSession(session: http2.ServerHttp2Session, peer: NoisePeer): void {
    const L = this.config.limits;
    let open = 0;
    let idle: NodeJS.Timeout | undefined;
    const armIdle = () => {
      idle = setTimeout(() => peer.close(`no request for ${L.noiseIdleTimeout} ms`), L.noiseIdleTimeout);
    };
    this.stats.noiseConnections++;
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      open++;
      this.stats.openStreams++;
      clearTimeout(idle);
      stream.on("close", () => {
        this.stats.openStreams--;
        if (--open === 0) armIdle();
      });
    });
    armIdle();
    const ping = L.pingInterval ? setInterval(() => this.ping(session, peer), L.pingInterval) : undefined;
    session.on("close", () => {
      this.stats.noiseConnections--;
      clearTimeout(idle);
      clearInterval(ping);
    });
  }

  private ping(session: http2.ServerHttp2Session, peer: NoisePeer): void {
    if (session.closed || session.destroyed) return;
    const { pingTimeout } = this.config.limits;
    let answered = false;
    // Timers run before I/O in an event-loop turn: after a stall the answer may be waiting
    // unread, so look again once pending I/O has been handled.
    const timer = setTimeout(
      () =>
        setImmediate(() => {
          if (answered) return;
          peer.dead = true;
          peer.close(`no answer to an HTTP/2 PING within ${pingTimeout} ms`);
        }),
      pingTimeout,
    );
    try {
      session.ping((err) => {
        answered = !err;
        if (answered) clearTimeout(timer);
      });
    } catch {
      clearTimeout(timer); // too many pings in flight: the earlier ones' timers still run
    }
  }

  /** Answer a failed request with its status, or reset its stream if the answer had begun. */
  private failRequest(r: http2.Http2ServerRequest, w: http2.Http2ServerResponse, e: unknown): void {
    const status = e instanceof HttpError ? e.status : 500;
    if (status === 500) this.log(`error on ${r.url}: ${(e as Error).stack ?? e}`);
    try {
      if (w.headersSent || w.stream.destroyed) return void w.stream.close();
      w.writeHead(status, { "content-type": "text/plain" });
      // A body we stopped reading (too big, too slow) must not hold the stream open.
      w.end(`${(e as Error).message}\n`, () => {
        if (!r.complete) w.stream.close();
      });
    } catch {}
  }

  private async onNoiseRequest(peer: NoisePeer, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): Promise<void> {
    const { machineKey } = peer;
    const path = new URL(req.url, "http://x").pathname;
    if (req.method !== "POST") throw new HttpError(405, "method not allowed");
    const decoded = await this.readRequest(machineKey, path, req);
    if (path === "/machine/register") {
      const body = decoded as RegisterRequest;
      const out = await this.register(machineKey, body, req);
      if (!out) return; // the client went away while waiting for approval
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(out));
      return;
    }
    if (path === "/machine/map") return this.map(peer, decoded as MapRequest, res);
    throw new HttpError(404, `${path} is not implemented`);
  }

  /** Read and decode a request's body (its own frame: the raw bytes are not held by a long poll). */
  private async readRequest(
    machineKey: string,
    path: string,
    req: http2.Http2ServerRequest,
  ): Promise<RegisterRequest | MapRequest | undefined> {
    const raw = await readBody(req, this.config.limits.maxBodyBytes, this.config.limits.bodyReadTimeout);
    this.onRequestBody?.(path, raw);
    if (path === "/machine/register") return this.decode(machineKey, "register", decodeRegister, raw);
    if (path === "/machine/map") return this.decode(machineKey, "map", decodeMap, raw);
    return undefined;
  }

  /** Decode a request body into our own type, or refuse it (400) with a log line saying why. */
  private decode<T>(machineKey: string, what: string, decoder: (v: unknown) => T, body: Buffer): T {
    try {
      return decoder(parseJson(body));
    } catch (e) {
      if (!(e instanceof RequestError || e instanceof HttpError)) throw e;
      this.count(this.stats.refused, what);
      this.log(`${what} refused from ${machineKey.slice(0, 17)}…: ${e.message}`);
      throw new HttpError(400, `bad ${what} request: ${e.message}`);
    }
  }

  // ---- /machine/register ----

  private registerResponse(userId: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
    const u = this.tailnet.user(userId);
    const login = u ? loginName(u) : "";
    const display = u?.displayName || login;
    return {
      User: { ID: userId, DisplayName: display },
      Login: { ID: userId, Provider: u?.provider ?? "", LoginName: login, DisplayName: display },
      NodeKeyExpired: false,
      MachineAuthorized: true,
      AuthURL: "",
      ...extra,
    };
  }

  /** Answer a register request; every outcome is counted for /metrics. */
  private async register(
    machineKey: string,
    r: RegisterRequest,
    req: http2.Http2ServerRequest,
  ): Promise<Record<string, unknown> | undefined> {
    const [outcome, res] = await this.registerOutcome(machineKey, r, req);
    this.count(this.stats.registers, outcome);
    return res;
  }

  private async registerOutcome(
    machineKey: string,
    r: RegisterRequest,
    req: http2.Http2ServerRequest,
  ): Promise<[string, Record<string, unknown> | undefined]> {
    // A node key is bound to the machine that registered it.
    const byKey = this.tailnet.byNodeKey(r.nodeKey);
    if (byKey && byKey.machineKey !== machineKey) {
      this.log(`register: refused node key of node ${byKey.id} presented by another machine key`);
      return ["refused", { Error: "node key belongs to another machine" }];
    }
    const existing = this.tailnet.byMachineKey(machineKey);
    if (r.expiry && r.expiry <= new Date()) return ["logout", await this.logout(existing)];
    if (r.authKey) return this.registerWithKey(machineKey, r);
    if (existing && !this.tailnet.isExpired(existing)) {
      if (existing.nodeKey === r.nodeKey) {
        // A restart sends a zero expiry; a future one would extend the key, which only a login may.
        if (r.expiry) throw new HttpError(400, "extending key is not allowed");
        return ["restart", this.registerResponse(existing.userId)];
      }
      if (r.oldNodeKey && existing.nodeKey === r.oldNodeKey) {
        this.tailnet.rotateNodeKey(existing, r.nodeKey);
        await this.tailnet.committed();
        return ["rotate", this.registerResponse(existing.userId)];
      }
    }
    return this.interactive(machineKey, r, req);
  }

  /** A past expiry is a logout: the node's key expires (an ephemeral node goes). */
  private async logout(existing: NodeRec | undefined): Promise<Record<string, unknown>> {
    if (!existing) return { NodeKeyExpired: true };
    this.tailnet.expire(existing.id);
    await this.tailnet.committed();
    this.log(`node ${existing.id} ${existing.givenName} logged out`);
    return this.registerResponse(existing.userId, { NodeKeyExpired: true, MachineAuthorized: false });
  }

  private async registerWithKey(machineKey: string, r: RegisterRequest): Promise<[string, Record<string, unknown>]> {
    try {
      const { nodeKey, hostinfo, version: cap, expiry } = r;
      const n = this.tailnet.registerWithKey({ machineKey, nodeKey, authKey: r.authKey!, hostinfo, cap, expiry });
      await this.tailnet.committed();
      this.log(`node ${n.id} ${n.givenName} (${n.ipv4}) registered with a pre-auth key for user ${this.tailnet.user(n.userId)?.name}`);
      return ["authkey", this.registerResponse(n.userId)];
    } catch (e) {
      if (!(e instanceof TailnetError)) throw e;
      this.log(`register refused: ${e.message}`);
      return ["refused", { Error: e.message }];
    }
  }

  /** Interactive login: hand out a URL; the follow-up request waits for an admin's approval. */
  private async interactive(
    machineKey: string,
    r: RegisterRequest,
    req: http2.Http2ServerRequest,
  ): Promise<[string, Record<string, unknown> | undefined]> {
    const p = r.followup ? this.pending.get(r.followup.split("/register/")[1] ?? "") : undefined;
    if (p && p.machineKey === machineKey) {
      const userId = await new Promise<number | undefined>((resolve) => {
        p.waiters.push(resolve);
        req.on("close", () => resolve(undefined));
      });
      if (userId !== undefined) return ["approved", this.registerResponse(userId)];
      if (req.stream.closed) return ["gone", undefined]; // the client went away
      // The login expired or was evicted while the client waited: a new one, as for an unknown URL.
    }
    return ["pending", this.startLogin(machineKey, r)];
  }

  /** A fresh pending login and its URL (also for an unknown or expired follow-up, as Headscale does). */
  private startLogin(machineKey: string, r: RegisterRequest): Record<string, unknown> {
    const id = randomBytes(12).toString("base64url");
    const { nodeKey, hostinfo, version: cap, expiry } = r;
    this.pending.add({ id, machineKey, nodeKey, hostinfo, cap, expiry, waiters: [], created: Date.now() });
    const url = `${this.config.serverUrl.replace(/\/$/, "")}/register/${id}`;
    this.log(`interactive login pending: headscale nodes register --user USERNAME --key ${id}`);
    return { AuthURL: url, MachineAuthorized: false };
  }

  /** `nodes register --user U --key ID` (or an OIDC login, confirmed): approve a pending interactive login. */
  async approveLogin(id: string, userRef: string | number, method: "cli" | "oidc" = "cli"): Promise<number> {
    const p = this.pending.get(id);
    if (!p) throw new TailnetError(`no pending login with key ${id}`);
    const user = this.tailnet.findUser(userRef);
    const n = this.tailnet.registerByAdmin(
      { machineKey: p.machineKey, nodeKey: p.nodeKey, hostinfo: p.hostinfo, cap: p.cap, expiry: p.expiry, userId: user.id },
      method,
    );
    await this.tailnet.committed();
    this.pending.drop(id, user.id);
    const by = method === "oidc" ? "through OIDC" : "by an admin";
    this.log(`node ${n.id} ${n.givenName} (${n.ipv4}) registered ${by} for user ${loginName(user)}`);
    return n.id;
  }

  // ---- /machine/map ----

  /** A node's serialised view: the shared, cached one unless a policy narrowed its routes for this viewer. */
  private readonly viewJson: ViewJson = (n, routes) => {
    if (routes && routes.join() !== this.tailnet.offeredRoutes(n).join())
      return JSON.stringify(nodeView(this.tailnet, this.mapper, n, routes));
    let v = this.viewCache.get(n.id);
    if (v === undefined) {
      v = JSON.stringify(nodeView(this.tailnet, this.mapper, n));
      this.viewCache.set(n.id, v);
    }
    return v;
  };

  private async map(peer: NoisePeer, r: MapRequest, res: http2.Http2ServerResponse): Promise<void> {
    const node = this.tailnet.byNodeKey(r.nodeKey);
    if (!node) throw new HttpError(404, "node not found; register first");
    if (node.machineKey !== peer.machineKey) {
      this.log(`map: refused node ${node.id}: the Noise machine key does not match the node's`);
      throw new HttpError(403, "machine key does not match the node");
    }
    if (r.version < MIN_CAPVER) throw new HttpError(400, `unsupported client version ${r.version}`);
    // A lite update states the client's endpoints as they are now (none means none); a stream
    // request's empty list is ignored, as the protocol allows (it may predate discovery).
    const lite = !r.stream && r.omitPeers;
    this.tailnet.updateFromMapRequest(node, {
      discoKey: r.discoKey,
      endpoints: lite ? (r.endpoints ?? []) : r.endpoints?.length ? r.endpoints : undefined,
      hostinfo: r.hostinfo,
      cap: r.version,
    });
    if (lite) {
      // The state is stored above; the client only reads the status.
      res.writeHead(200);
      res.end();
      return;
    }
    // Built when sent, never held: a stream lives for hours, and its first map is the whole tailnet.
    const full = () => encode(fullMapJson(this.tailnet, this.mapper, node, this.viewJson), r.compress);
    res.writeHead(200, { "content-type": "application/octet-stream" });
    if (!r.stream) {
      const first = full();
      this.stats.mapBytes += first.length;
      return void res.end(first);
    }
    await this.streamMap(peer, node.id, r.compress, full, res);
  }

  /**
   * The long-poll: the full map, then changes and keep-alives until the client goes. A client
   * that does not take its data (backpressure for writeTimeout, or maxBufferedBytes queued)
   * loses its connection rather than making the server buffer without bound.
   */
  private async streamMap(
    peer: NoisePeer,
    nodeId: number,
    compress: boolean,
    full: () => Buffer,
    res: http2.Http2ServerResponse,
  ): Promise<void> {
    const L = this.config.limits;
    let keepalive: NodeJS.Timeout | undefined;
    let stalled: NodeJS.Timeout | undefined;
    let ended = false;
    const stream = res.stream;
    const session: MapSession = {
      nodeId,
      compress,
      write: (f) => {
        if (ended || stream.destroyed) return;
        this.stats.mapBytes += f.length;
        if (stream.write(f)) return;
        if (stream.writableLength > L.maxBufferedBytes) return peer.close(`over ${L.maxBufferedBytes} bytes of map data queued`);
        stalled ??= setTimeout(() => peer.close(`map data not taken within ${L.writeTimeout} ms`), L.writeTimeout);
      },
      end: () => {
        if (ended) return;
        ended = true;
        clearTimeout(keepalive);
        res.end();
      },
    };
    stream.on("drain", () => {
      clearTimeout(stalled);
      stalled = undefined;
    });
    const arm = () => {
      keepalive = setTimeout(() => {
        session.write(encode(KEEPALIVE_JSON, compress));
        arm();
      }, KEEPALIVE_MS());
    };
    this.sessions.get(nodeId)?.end();
    this.sessions.set(nodeId, session);
    clearTimeout(this.goingOffline.get(nodeId));
    this.goingOffline.delete(nodeId);
    clearTimeout(this.ephemeralDeletes.get(nodeId));
    this.ephemeralDeletes.delete(nodeId);
    // Only a policy makes what a node sees differ from node to node (flushUnderPolicy).
    session.sent = this.tailnet.policy() ? this.sentState(nodeId) : undefined;
    session.write(full());
    arm();
    this.tailnet.setOnline(nodeId, true);
    await new Promise<void>((resolve) => stream.once("close", resolve));
    ended = true;
    clearTimeout(keepalive);
    clearTimeout(stalled);
    if (this.sessions.get(nodeId) === session) {
      this.sessions.delete(nodeId);
      this.offlineUnlessBack(nodeId, peer.dead ? 0 : L.offlineGrace);
    }
  }

  /**
   * A node whose map stream ended goes offline unless a new stream comes within `graceMs`, as
   * Headscale waits up to 10 s: a client that restarts its long-poll, or a router's brief
   * network blip, does not lose its routes to the standby for good (a primary is kept while
   * online). A client that stopped answering PINGs is gone: offline at once.
   */
  private offlineUnlessBack(nodeId: number, graceMs: number): void {
    if (graceMs <= 0) return this.wentOffline(nodeId);
    clearTimeout(this.goingOffline.get(nodeId));
    const t = setTimeout(() => {
      this.goingOffline.delete(nodeId);
      if (!this.sessions.has(nodeId)) this.wentOffline(nodeId);
    }, graceMs);
    t.unref();
    this.goingOffline.set(nodeId, t);
  }

  /**
   * When the soonest key expiry passes, send the expired node's view again (Expired, not
   * authorised), as Headscale's expiry check does: its peers drop it from WireGuard, and the
   * node itself, if its clock lags, learns it must log in again.
   */
  private scheduleExpiryNotice(): void {
    clearTimeout(this.expiryNotice);
    const next = this.tailnet.nextKeyExpiry(this.lastExpiryCheck);
    if (!next) return;
    // setTimeout holds at most 2^31-1 ms (24.8 days); a later expiry is looked at again then.
    const t = setTimeout(
      () => {
        const now = new Date();
        const ids = this.tailnet.announceExpired(this.lastExpiryCheck);
        this.lastExpiryCheck = now;
        if (ids.length) this.log(`key expired: node ${ids.join(", ")}`);
        this.scheduleExpiryNotice();
      },
      Math.min(Math.max(0, next.getTime() - Date.now()) + 1, 2 ** 31 - 1),
    );
    t.unref();
    this.expiryNotice = t;
  }

  /**
   * Offline; an ephemeral node (a CI job, a container that never logs out) is deleted once it
   * has stayed away for the inactivity timeout, as Headscale does, so the tailnet does not fill
   * up with nodes that will never return.
   */
  private wentOffline(nodeId: number): void {
    this.tailnet.setOnline(nodeId, false);
    if (!this.tailnet.node(nodeId)?.ephemeral) return;
    clearTimeout(this.ephemeralDeletes.get(nodeId));
    const t = setTimeout(() => {
      this.ephemeralDeletes.delete(nodeId);
      if (this.sessions.has(nodeId) || !this.tailnet.node(nodeId)) return;
      this.tailnet.delete(nodeId);
      this.log(`deleted ephemeral node ${nodeId}: offline for ${this.config.ephemeralInactivityTimeout} ms`);
    }, this.config.ephemeralInactivityTimeout);
    t.unref();
    this.ephemeralDeletes.set(nodeId, t);
  }

  /**
   * Send what changed to every map stream, once per batch of changes. Streams whose own node
   * did not change all get the same message, serialised and framed once.
   */
  private flushChanges(): void {
    this.flushScheduled = false;
    const changed = [...this.changedBatch].filter((id) => this.tailnet.node(id));
    const removed = [...this.removedBatch];
    this.changedBatch.clear();
    this.removedBatch.clear();
    const views = new Map(changed.map((id) => [id, this.viewJson(this.tailnet.node(id)!)]));
    const profiles = JSON.stringify(
      userProfiles(
        this.tailnet,
        changed.map((id) => this.tailnet.node(id)!.userId),
      ),
    );
    const time = JSON.stringify(new Date().toISOString());
    const message = (self: number | undefined) => {
      const peers = [...views].filter(([id]) => id !== self).map(([, v]) => v);
      const gone = removed.filter((id) => id !== self);
      const parts = [
        ...(self !== undefined && views.has(self) ? [`"Node":${views.get(self)}`] : []),
        ...(peers.length ? [`"PeersChanged":[${peers.join(",")}]`, `"UserProfiles":${profiles}`] : []),
        ...(gone.length ? [`"PeersRemoved":${JSON.stringify(gone)}`] : []),
      ];
      return parts.length ? `{${parts.join(",")},"ControlTime":${time}}` : undefined;
    };
    if (this.tailnet.policy()) return this.flushUnderPolicy(changed, removed, message);
    const shared = message(undefined);
    const sharedFrames = new Map<boolean, Buffer>();
    for (const s of this.sessions.values()) {
      if (removed.includes(s.nodeId)) {
        s.end(); // this node was deleted
        continue;
      }
      if (views.has(s.nodeId)) {
        const own = message(s.nodeId);
        if (own) s.write(encode(own, s.compress));
        continue;
      }
      if (!shared) continue;
      let f = sharedFrames.get(s.compress);
      if (!f) {
        f = encode(shared, s.compress);
        sharedFrames.set(s.compress, f);
      }
      s.write(f);
    }
  }

  /** What a node's map carries under the policy now: its filter, its peers and the routes it is given of each. */
  private sentState(nodeId: number): SentState {
    const c = this.tailnet.compiled().get(nodeId);
    return { filter: JSON.stringify(c?.filter ?? []), peers: new Set(c?.peers ?? []), routes: c?.routes ?? new Map() };
  }

  /**
   * Under an ACL policy each node sees only some peers: a stream whose filter or peer set
   * changed gets a whole new map (as Headscale sends on a policy change); the others get the
   * changes of the peers they see.
   */
  private flushUnderPolicy(changed: number[], removed: number[], message: (self: number | undefined) => string | undefined): void {
    for (const s of this.sessions.values()) {
      if (removed.includes(s.nodeId)) {
        s.end();
        continue;
      }
      const node = this.tailnet.node(s.nodeId);
      if (!node) continue;
      const now = this.sentState(s.nodeId);
      if (!s.sent || !sameState(s.sent, now)) {
        s.sent = now;
        s.write(encode(fullMapJson(this.tailnet, this.mapper, node, this.viewJson), s.compress));
        continue;
      }
      if (!changed.some((id) => id === s.nodeId || now.peers.has(id))) continue;
      const json = message(s.nodeId);
      if (!json) continue;
      // PeersChanged lists every changed node; keep only those this node may see, with the routes it is given of each.
      const parsed = JSON.parse(json) as { PeersChanged?: { ID: number }[] };
      if (parsed.PeersChanged)
        parsed.PeersChanged = parsed.PeersChanged.filter((p) => now.peers.has(p.ID)).map((p) =>
          JSON.parse(this.viewJson(this.tailnet.node(p.ID)!, now.routes.get(p.ID) ?? [])),
        );
      if (parsed.PeersChanged?.length === 0) delete parsed.PeersChanged;
      s.write(encode(JSON.stringify(parsed), s.compress));
    }
  }

  /** Open map long-polls. */
  get mapStreams(): number {
    return this.sessions.size;
  }

  /** Interactive logins waiting for an admin (bounded by limits.max_pending_logins). */
  get pendingLogins(): number {
    return this.pending.size;
  }

  private count(m: Map<string, number>, key: string): void {
    m.set(key, (m.get(key) ?? 0) + 1);
  }

  /** DERP's verify_clients: a registered, unexpired node's key. */
  private isNodeKey(raw: Uint8Array): boolean {
    const n = this.tailnet.byNodeKey(formatKey("nodekey", raw));
    return n !== undefined && !this.tailnet.isExpired(n);
  }

  /** For the admin API: is there a live map stream for this node? */
  isOnline(id: number): boolean {
    return this.tailnet.isOnline(id);
  }
}

/** What a stream's client was last sent under a policy: filter (JSON), peers, and the routes it is given of each peer. */
interface SentState {
  filter: string;
  peers: Set<number>;
  routes: Map<number, string[]>;
}

function sameState(a: SentState, b: SentState): boolean {
  const routes = (s: SentState) => JSON.stringify([...s.routes].filter(([, r]) => r.length).sort(([x], [y]) => x - y));
  return a.filter === b.filter && a.peers.size === b.peers.size && [...b.peers].every((id) => a.peers.has(id)) && routes(a) === routes(b);
}

function lengthPrefixed(b: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32LE(b.length, 0);
  return Buffer.concat([h, b]);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(`${JSON.stringify(body)}\n`);
}
