/**
 * The null control server: the least work a server can do and still give every simulated node
 * what the benchmark waits for, so that a run against it measures the load generator's own
 * ceiling. It speaks the same transport (Noise IK, HTTP/2 inside, zstd-framed map stream,
 * the repository's own code), authorises every registration, and keeps each node's peer entry
 * as serialised JSON, built once per change. A new stream gets its full netmap by joining those
 * strings; changes are batched per event-loop turn into one delta frame, encoded once and
 * written to every open stream as is (nodes skip themselves). No database, no policy, no
 * per-peer computation. State goes to a file on SIGTERM, so it can be restarted like the others.
 *
 * Usage: null-server.ts PORT STATE_FILE
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { formatKey, newKeyPair, zeroKey } from "../../src/control/keys.ts";
import { NoiseConn, respond } from "../../src/control/noise.ts";
import { mapFrameJson } from "../../src/control/zstd.ts";

interface Node {
  id: number;
  nodeKey: string;
  machineKey: string;
  hostinfo: Record<string, unknown>;
  endpoints: string[];
  discoKey: string;
  /** The node's tailcfg.Node as JSON, as every peer sees it. */
  entry: string;
}

const [port, stateFile] = [Number(process.argv[2]), process.argv[3]!];
const noiseKey = newKeyPair();
const byKey = new Map<string, Node>();
const byId = new Map<number, Node>();
const streams = new Map<http2.Http2ServerResponse, Node>();
let nextId = 1;
/** Nodes whose entry went out to the others already (a restart's full maps carry the rest). */
const announced = new Set<number>();
const batch = { changed: new Set<Node>(), patched: new Set<Node>(), removed: new Set<number>() };
let flushing = false;

function entryOf(n: Omit<Node, "entry">): string {
  const ip = `100.64.${(n.id >> 8) & 255}.${n.id & 255}`;
  const ip6 = `fd7a:115c:a1e0::${n.id.toString(16)}`;
  return JSON.stringify({
    ID: n.id,
    StableID: `n${n.id}`,
    Name: `${String(n.hostinfo.Hostname ?? `node-${n.id}`)}.bench.example.com.`,
    User: 1,
    Key: n.nodeKey,
    Machine: n.machineKey,
    DiscoKey: n.discoKey,
    Addresses: [`${ip}/32`, `${ip6}/128`],
    AllowedIPs: [`${ip}/32`, `${ip6}/128`],
    Endpoints: n.endpoints,
    Hostinfo: n.hostinfo,
    Created: "2026-01-01T00:00:00Z",
    Online: true,
    MachineAuthorized: true,
  });
}

function rebuild(n: Node): void {
  n.entry = entryOf(n);
}

function load(): void {
  if (!existsSync(stateFile)) return;
  const s = JSON.parse(readFileSync(stateFile, "utf8")) as { nextId: number; nodes: Node[] };
  nextId = s.nextId;
  for (const n of s.nodes) {
    byKey.set(n.nodeKey, n);
    byId.set(n.id, n);
    announced.add(n.id);
  }
}

function save(): void {
  writeFileSync(stateFile, JSON.stringify({ nextId, nodes: [...byId.values()] }));
}

function schedule(): void {
  if (flushing) return;
  flushing = true;
  setImmediate(() => {
    flushing = false;
    const delta: Record<string, unknown> = {};
    if (batch.changed.size) delta.PeersChanged = `[${[...batch.changed].map((n) => n.entry).join(",")}]`;
    if (batch.patched.size)
      delta.PeersChangedPatch = JSON.stringify([...batch.patched].map((n) => ({ NodeID: n.id, Endpoints: n.endpoints })));
    if (batch.removed.size) delta.PeersRemoved = JSON.stringify([...batch.removed]);
    batch.changed.clear();
    batch.patched.clear();
    batch.removed.clear();
    const json = `{${Object.entries(delta)
      .map(([k, v]) => `"${k}":${v}`)
      .join(",")}}`;
    if (json === "{}") return;
    const frame = mapFrameJson(json);
    for (const res of streams.keys()) if (!res.stream.destroyed) res.write(frame);
  });
}

async function body(req: http2.Http2ServerRequest): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString() || "{}");
}

function register(machineKey: string, b: Record<string, unknown>): Record<string, unknown> {
  const nodeKey = String(b.NodeKey);
  if (!byKey.has(nodeKey)) {
    const base = {
      id: nextId++,
      nodeKey,
      machineKey,
      hostinfo: (b.Hostinfo as Record<string, unknown>) ?? {},
      endpoints: [],
      discoKey: "",
    };
    const n = { ...base, entry: entryOf(base) };
    byKey.set(nodeKey, n);
    byId.set(n.id, n);
  }
  return { User: { ID: 1, DisplayName: "bench" }, Login: { ID: 1, LoginName: "bench" }, MachineAuthorized: true, AuthURL: "" };
}

function map(b: Record<string, unknown>, res: http2.Http2ServerResponse): void {
  const n = byKey.get(String(b.NodeKey));
  if (!n) {
    res.writeHead(403);
    res.end();
    return;
  }
  const eps = b.Endpoints as string[] | undefined;
  const moved = eps !== undefined && eps.length > 0 && eps.join() !== n.endpoints.join();
  if (moved) n.endpoints = eps;
  const rekeyed = typeof b.DiscoKey === "string" && b.DiscoKey !== n.discoKey;
  if (rekeyed) n.discoKey = b.DiscoKey as string;
  if (moved || rekeyed) rebuild(n);
  if (!b.Stream) {
    if (moved && announced.has(n.id)) {
      batch.patched.add(n);
      schedule();
    }
    res.writeHead(200);
    res.end();
    return;
  }
  const peers = [...byId.values()].filter((p) => p !== n).map((p) => p.entry);
  res.writeHead(200, { "content-type": "application/octet-stream" });
  res.write(mapFrameJson(`{"Node":${n.entry},"Peers":[${peers.join(",")}]}`));
  streams.set(res, n);
  res.stream.on("close", () => streams.delete(res));
  if (!announced.has(n.id)) {
    announced.add(n.id);
    batch.changed.add(n);
    schedule();
  } else if (rekeyed) {
    batch.changed.add(n);
    schedule();
  }
}

function onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on("error", () => socket.destroy());
  const init = Buffer.from(String(req.headers["x-tailscale-handshake"] ?? ""), "base64");
  socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: tailscale-control-protocol\r\nConnection: upgrade\r\n\r\n");
  const hs = respond(noiseKey, init);
  socket.write(hs.response);
  (socket as Socket).setNoDelay?.(true);
  const conn = new NoiseConn(socket, hs.result, { machineKey: hs.result.machineKey, version: hs.result.version }, head);
  conn.on("error", () => {});
  const machineKey = formatKey("mkey", hs.result.machineKey);
  const h2 = http2.createServer();
  h2.on("request", (r: http2.Http2ServerRequest, w: http2.Http2ServerResponse) => {
    body(r)
      .then((b) => {
        if (r.url.startsWith("/machine/register")) {
          w.writeHead(200, { "content-type": "application/json" });
          w.end(JSON.stringify(register(machineKey, b)));
        } else if (r.url.startsWith("/machine/map")) map(b, w);
        else {
          w.writeHead(404);
          w.end();
        }
      })
      .catch(() => w.stream.close());
  });
  h2.on("sessionError", () => conn.destroy());
  h2.emit("connection", conn);
}

function onHttp(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://x");
  const del = /^\/bench\/nodes\/(\d+)$/.exec(url.pathname);
  if (req.method === "DELETE" && del) {
    const n = byId.get(Number(del[1]));
    if (n) {
      batch.changed.delete(n);
      batch.patched.delete(n);
      byId.delete(n.id);
      byKey.delete(n.nodeKey);
      batch.removed.add(n.id);
      schedule();
    }
    res.writeHead(n ? 200 : 404).end();
    return;
  }
  if (url.pathname === "/key") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ legacyPublicKey: zeroKey("mkey"), publicKey: formatKey("mkey", noiseKey.publicKey) }));
    return;
  }
  res.writeHead(url.pathname === "/health" ? 200 : 404).end();
}

load();
const server = http.createServer(onHttp);
server.on("upgrade", onUpgrade);
server.listen(port, "127.0.0.1");
process.on("SIGTERM", () => {
  save();
  process.exit(0);
});
