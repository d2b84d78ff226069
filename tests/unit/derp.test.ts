import { randomBytes } from "node:crypto";
import http from "node:http";
import type net from "node:net";
import type { AddressInfo } from "node:net";
import { x25519 } from "@noble/curves/ed25519.js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  boxSharedKey,
  DERP_MAGIC,
  DerpServer,
  encodeFrame,
  FrameType,
  MAX_PACKET_SIZE,
  openBox,
  PeerGoneReason,
  sealBox,
} from "../../src/control/derp.ts";
import { DerpClient, derpUpgrade } from "../../src/control/derp-client.ts";

interface Running {
  derp: DerpServer;
  url: string;
  base: string;
  logs: string[];
  close(): Promise<void>;
}

async function startServer(keepAliveMs?: number): Promise<Running> {
  const logs: string[] = [];
  const derp = new DerpServer({ privateKey: randomBytes(32), log: (m) => logs.push(m), keepAliveMs });
  const server = http.createServer((req, res) => {
    if (!derp.handleRequest(req, res)) {
      res.writeHead(404);
      res.end();
    }
  });
  server.on("upgrade", (req, socket, head) => {
    if (!derp.handleUpgrade(req, socket, head)) socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    derp,
    logs,
    base: `http://127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}/derp`,
    close: async () => {
      derp.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** An upgraded socket with everything it receives collected, and a promise for its closing. */
async function raw(url: string, fastStart = false) {
  const up = await derpUpgrade({ url, fastStart });
  const received: Buffer[] = [up.rest];
  let notify: (() => void) | undefined;
  up.socket.on("data", (b: Buffer) => {
    received.push(b);
    notify?.();
  });
  up.socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => up.socket.once("close", () => resolve()));
  up.socket.resume();
  const bytes = async (n: number): Promise<Buffer> => {
    for (;;) {
      const all = Buffer.concat(received);
      if (all.length >= n) return all;
      await new Promise<void>((resolve, reject) => {
        notify = resolve;
        closed.then(() => reject(new Error(`closed after ${all.length} bytes`)));
      });
    }
  };
  return { ...up, closed, bytes };
}

/** A raw socket that has completed the handshake by hand (to write malformed frames after it). */
async function handshaken(url: string) {
  const r = await raw(url);
  const priv = randomBytes(32);
  const pub = x25519.getPublicKey(priv);
  const hello = await r.bytes(45);
  const shared = boxSharedKey(priv, hello.subarray(13, 45));
  r.socket.write(encodeFrame(FrameType.ClientInfo, pub, sealBox(shared, Buffer.from('{"version":2}'))));
  // ServerInfo: 5-byte header + 24-byte nonce + 16-byte tag + {"version":2}
  await r.bytes(45 + 5 + 24 + 16 + 13);
  return r;
}

async function eventually(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A packet magicsock's disco layer would send: "TS💬" + 32-byte disco key + 24-byte nonce + box. */
function discoPacket(): Buffer {
  return Buffer.concat([Buffer.from("TS💬"), randomBytes(32 + 24 + 40)]);
}

describe("NaCl box (crypto_box) against libsodium", () => {
  // Computed with libsodium 1.0.18 (Debian libsodium23) through Python ctypes:
  // crypto_scalarmult_base for both keys, then crypto_box_easy(msg, nonce, serverPk, clientSk).
  const clientSk = Buffer.alloc(32, 0x66);
  const serverSk = Buffer.alloc(32, 0x55);
  const clientPk = "219e4d800da968d2a5fcb009c784f4746c7138edb9ee4844b739e830b05cf424";
  const serverPk = "38ab664bd86f77d7e66bdd9ae0792913a94fd8b33a1260027e4b46c1f4884c67";
  const nonce = Buffer.from(Array.from({ length: 24 }, (_, i) => i));
  const msg = Buffer.from('{"version":2}');
  const box = "c6be9419464d53587615f3cb0cd2a29a0b340c767f153a98fd98fc3bbf";

  it("seals and opens like crypto_box_easy", () => {
    expect(Buffer.from(x25519.getPublicKey(clientSk)).toString("hex")).toBe(clientPk);
    expect(Buffer.from(x25519.getPublicKey(serverSk)).toString("hex")).toBe(serverPk);
    const k = boxSharedKey(clientSk, Buffer.from(serverPk, "hex"));
    expect(sealBox(k, msg, nonce).toString("hex")).toBe(nonce.toString("hex") + box);
    const k2 = boxSharedKey(serverSk, Buffer.from(clientPk, "hex"));
    expect(openBox(k2, Buffer.concat([nonce, Buffer.from(box, "hex")]))?.toString()).toBe(msg.toString());
    const tampered = Buffer.concat([nonce, Buffer.from(box, "hex")]);
    tampered[30] = (tampered[30] as number) ^ 1;
    expect(openBox(k2, tampered)).toBeNull();
    expect(() => boxSharedKey(serverSk, Buffer.alloc(32))).toThrow();
  });
});

describe("DERP server", () => {
  let s: Running;
  beforeAll(async () => {
    s = await startServer();
  });
  afterAll(async () => {
    await s.close();
  });
  beforeEach(async () => {
    // Clients the previous test closed may still be on their way out.
    await eventually(() => s.derp.clientCount() === 0, "the previous test's clients to be gone");
  });

  it("answers probes, /generate_204, and 426 for /derp without an upgrade; other paths are not its", async () => {
    for (const path of ["/derp/probe", "/derp/latency-check"]) {
      for (const method of ["GET", "HEAD"]) {
        const r = await fetch(s.base + path, { method });
        expect(r.status).toBe(200);
        expect(r.headers.get("access-control-allow-origin")).toBe("*");
      }
      expect((await fetch(s.base + path, { method: "POST" })).status).toBe(405);
    }
    const plain = await fetch(s.url);
    expect(plain.status).toBe(426);
    expect(await plain.text()).toContain("DERP requires connection upgrade");
    const g = await fetch(`${s.base}/generate_204`, { headers: { "X-Tailscale-Challenge": "abc.123" } });
    expect(g.status).toBe(204);
    expect(g.headers.get("x-tailscale-response")).toBe("response abc.123");
    expect((await fetch(`${s.base}/derpx`)).status).toBe(404);
    expect((await fetch(`${s.base}/key`)).status).toBe(404);
  });

  it("upgrades with 101 and the Derp headers, then sends ServerKey (magic + key)", async () => {
    const r = await raw(s.url);
    expect(r.status).toMatch(/^HTTP\/1\.1 101 /);
    expect(r.headers.upgrade).toBe("DERP");
    expect(r.headers.connection).toBe("Upgrade");
    expect(r.headers["derp-version"]).toBe("2");
    expect(r.headers["derp-public-key"]).toBe(Buffer.from(s.derp.publicKey).toString("hex"));
    const b = await r.bytes(45);
    expect(b.subarray(0, 5).toString("hex")).toBe("0100000028");
    expect(b.subarray(5, 13).toString("hex")).toBe("44455250f09f9491");
    expect(b.subarray(5, 13).equals(DERP_MAGIC)).toBe(true);
    expect(b.subarray(13, 45).equals(Buffer.from(s.derp.publicKey))).toBe(true);
    r.socket.destroy();
  });

  it("with Derp-Fast-Start: 1 skips the HTTP response and starts with the ServerKey frame", async () => {
    const r = await raw(s.url, true);
    const b = await r.bytes(45);
    expect(b[0]).toBe(FrameType.ServerKey);
    expect(b.subarray(13, 45).equals(Buffer.from(s.derp.publicKey))).toBe(true);
    r.socket.destroy();
    const c = await DerpClient.connect({ url: s.url, fastStart: true });
    expect(c.upgradeHeaders).toEqual({});
    expect(c.serverInfo).toEqual({ version: 2 });
    c.close();
  });

  it("completes the handshake: sealed ClientInfo in, sealed ServerInfo {version:2} out", async () => {
    const before = s.derp.clientCount();
    const c = await DerpClient.connect({ url: s.url });
    expect(c.serverPublicKey.equals(Buffer.from(s.derp.publicKey))).toBe(true);
    expect(c.serverInfo).toEqual({ version: 2 });
    expect(s.derp.clientCount()).toBe(before + 1);
    c.close();
    await eventually(() => s.derp.clientCount() === before, "the client to be gone");
  });

  it("relays packets both ways with the source key, up to 64 KiB, and answers Ping with Pong", async () => {
    const a = await DerpClient.connect({ url: s.url });
    const b = await DerpClient.connect({ url: s.url });
    a.send(b.publicKey, Buffer.from("hello b"));
    const got = await b.recvType("packet");
    expect(got.source.equals(a.publicKey)).toBe(true);
    expect(got.data.toString()).toBe("hello b");
    b.send(a.publicKey, Buffer.from("hello a"));
    const back = await a.recvType("packet");
    expect(back.source.equals(b.publicKey)).toBe(true);
    expect(back.data.toString()).toBe("hello a");

    const big = randomBytes(MAX_PACKET_SIZE);
    a.send(b.publicKey, big);
    expect((await b.recvType("packet")).data.equals(big)).toBe(true);

    const ping = Buffer.from("01234567");
    a.ping(ping);
    expect((await a.recvType("pong")).data.equals(ping)).toBe(true);
    a.notePreferred(true); // ignored, must not close
    a.ping(Buffer.from("abcdefgh"));
    expect((await a.recvType("pong")).data.toString()).toBe("abcdefgh");
    a.close();
    b.close();
  });

  it("answers a disco packet to an unknown key with PeerGone(NotHere) and drops other packets silently", async () => {
    const a = await DerpClient.connect({ url: s.url });
    const nobody = randomBytes(32);
    a.send(nobody, Buffer.from("not disco"));
    a.ping(Buffer.from("marker01"));
    const first = await a.recv();
    expect(first).toEqual({ type: "pong", data: Buffer.from("marker01") });
    a.send(nobody, discoPacket());
    const gone = await a.recv();
    expect(gone.type).toBe("peerGone");
    if (gone.type !== "peerGone") throw new Error("unreachable");
    expect(gone.peer.equals(nobody)).toBe(true);
    expect(gone.reason).toBe(PeerGoneReason.NotHere);
    a.close();
  });

  it("tells a receiver PeerGone(Disconnected) when a key it heard from leaves", async () => {
    const a = await DerpClient.connect({ url: s.url });
    const b = await DerpClient.connect({ url: s.url });
    a.send(b.publicKey, Buffer.from("x"));
    await b.recvType("packet");
    a.close();
    const gone = await b.recvType("peerGone");
    expect(gone.peer.equals(a.publicKey)).toBe(true);
    expect(gone.reason).toBe(PeerGoneReason.Disconnected);
    b.close();
  });

  it("keeps duplicate connections of one key; the newest, then the last writer, gets the packets", async () => {
    const key = randomBytes(32);
    const sender = await DerpClient.connect({ url: s.url });
    const old = await DerpClient.connect({ url: s.url, privateKey: key });
    const before = s.derp.clientCount();
    const dup = await DerpClient.connect({ url: s.url, privateKey: key });
    expect(dup.publicKey.equals(old.publicKey)).toBe(true);
    expect(s.derp.clientCount()).toBe(before + 1);

    sender.send(dup.publicKey, Buffer.from("to newest"));
    expect((await dup.recvType("packet")).data.toString()).toBe("to newest");

    old.ping(Buffer.from("oldspeak")); // the old connection speaks: it becomes active
    await old.recvType("pong");
    sender.send(dup.publicKey, Buffer.from("to last writer"));
    expect((await old.recvType("packet")).data.toString()).toBe("to last writer");

    old.close();
    await eventually(() => s.derp.clientCount() === before, "the old duplicate to be gone");
    sender.send(dup.publicKey, Buffer.from("to the one left"));
    expect((await dup.recvType("packet")).data.toString()).toBe("to the one left");
    sender.close();
    dup.close();
  });

  describe("malformed input closes the connection, and the server goes on", () => {
    const cases: [string, (pub: Uint8Array, shared: Uint8Array) => Buffer][] = [
      ["a first frame that is not ClientInfo", () => encodeFrame(FrameType.SendPacket, randomBytes(40))],
      ["a ClientInfo whose box does not open", (pub) => encodeFrame(FrameType.ClientInfo, pub, randomBytes(60))],
      [
        "a ClientInfo sealed with another key",
        (pub) => encodeFrame(FrameType.ClientInfo, pub, sealBox(randomBytes(32), Buffer.from("{}"))),
      ],
      ["a ClientInfo that is not JSON", (pub, k) => encodeFrame(FrameType.ClientInfo, pub, sealBox(k, Buffer.from("{nope")))],
      ["a ClientInfo that is a JSON array", (pub, k) => encodeFrame(FrameType.ClientInfo, pub, sealBox(k, Buffer.from("[]")))],
      ["a ClientInfo from the all-zero key", () => encodeFrame(FrameType.ClientInfo, Buffer.alloc(32), randomBytes(60))],
      ["a short ClientInfo", (pub) => encodeFrame(FrameType.ClientInfo, pub)],
      ["a ClientInfo header claiming 300 KiB", () => Buffer.from([FrameType.ClientInfo, 0x00, 0x04, 0xb0, 0x00])],
    ];
    for (const [name, frame] of cases) {
      it(`during the handshake: ${name}`, async () => {
        const r = await raw(s.url);
        const hello = await r.bytes(45);
        const priv = randomBytes(32);
        const pub = x25519.getPublicKey(priv);
        r.socket.write(frame(pub, boxSharedKey(priv, hello.subarray(13, 45))));
        await r.closed;
        const ok = await DerpClient.connect({ url: s.url });
        ok.close();
      });
    }

    const after: [string, Buffer][] = [
      ["a SendPacket of 64 KiB + 1", Buffer.from([FrameType.SendPacket, 0x00, 0x01, 0x00, 0x21])],
      ["a SendPacket shorter than a key", encodeFrame(FrameType.SendPacket, randomBytes(10))],
      ["a 4 GiB frame of unknown type", Buffer.from([0x7f, 0xff, 0xff, 0xff, 0xff])],
      ["a NotePreferred of 2 bytes", encodeFrame(FrameType.NotePreferred, Buffer.from([1, 1]))],
      ["a short Ping", encodeFrame(FrameType.Ping, randomBytes(4))],
      ["a Ping over 1000 bytes", encodeFrame(FrameType.Ping, randomBytes(1001))],
      ["WatchConns without a mesh key", encodeFrame(FrameType.WatchConns)],
      ["ClosePeer without a mesh key", encodeFrame(FrameType.ClosePeer, randomBytes(32))],
      ["ForwardPacket without a mesh key", encodeFrame(FrameType.ForwardPacket, randomBytes(70))],
    ];
    for (const [name, frame] of after) {
      it(`after the handshake: ${name}`, async () => {
        const before = s.derp.clientCount();
        const r = await handshaken(s.url);
        expect(s.derp.clientCount()).toBe(before + 1);
        r.socket.write(frame);
        await r.closed;
        expect(s.derp.clientCount()).toBe(before);
        const ok = await DerpClient.connect({ url: s.url });
        ok.ping(Buffer.from("stillok!"));
        await ok.recvType("pong");
        ok.close();
      });
    }

    it("skips a frame of unknown type (as the Go server does) and keeps the connection", async () => {
      const c = await DerpClient.connect({ url: s.url });
      c.writeRaw(encodeFrame(0x7e, randomBytes(3000)));
      c.writeRaw(encodeFrame(FrameType.KeepAlive)); // a server->client type from a client: unknown here too
      c.ping(Buffer.from("afterunk"));
      expect((await c.recvType("pong")).data.toString()).toBe("afterunk");
      c.close();
    });

    it("accepts frames split into single bytes", async () => {
      const c = await DerpClient.connect({ url: s.url });
      for (const byte of encodeFrame(FrameType.Ping, Buffer.from("bytewise"))) c.writeRaw(Buffer.from([byte]));
      expect((await c.recvType("pong")).data.toString()).toBe("bytewise");
      c.close();
    });
  });

  it("survives 2 s of random input before and after the handshake", async () => {
    const deadline = Date.now() + 2000;
    const types = [...Object.values(FrameType), 0x00, 0x16, 0x7f, 0xff];
    const randomFrame = (): Buffer => {
      const t = types[Math.floor(Math.random() * types.length)] as number;
      const roll = Math.random();
      if (roll < 0.05) {
        const h = Buffer.alloc(5);
        h[0] = t;
        h.writeUInt32BE(Math.floor(Math.random() * 0xffffffff), 1); // absurd length header
        return h;
      }
      if (roll < 0.1) return randomBytes(1 + Math.floor(Math.random() * 64)); // not even framing
      return encodeFrame(t, randomBytes(Math.floor(Math.random() * (roll < 0.2 ? 70_000 : 80))));
    };
    const writeChopped = (sock: net.Socket, b: Buffer) => {
      let off = 0;
      while (off < b.length) {
        const n = 1 + Math.floor(Math.random() * 2000);
        sock.write(b.subarray(off, off + n));
        off += n;
      }
    };
    let rounds = 0;
    const worker = async () => {
      while (Date.now() < deadline) {
        rounds++;
        const pre = Math.random() < 0.3;
        const r = pre ? await raw(s.url) : await handshaken(s.url);
        const frames = Array.from({ length: 1 + Math.floor(Math.random() * 20) }, randomFrame);
        writeChopped(r.socket, Buffer.concat(frames));
        // Then a Ping: the server answers it (the junk was skippable), or it has closed, or the
        // junk ended inside a frame whose rest never comes (the server rightly waits for it).
        r.socket.write(encodeFrame(FrameType.Ping, Buffer.from("fuzzdone")));
        const pong = Buffer.from("1300000008", "hex");
        await Promise.race([
          r.closed,
          (async () => {
            for (let n = 1; ; n += 1) {
              const all = await r.bytes(n);
              if (all.includes(Buffer.concat([pong, Buffer.from("fuzzdone")]))) return;
              n = all.length;
            }
          })().catch(() => {}),
          new Promise((resolve) => setTimeout(resolve, 300)),
        ]);
        r.socket.destroy();
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    expect(rounds).toBeGreaterThan(10);
    expect(s.logs.filter((l) => l.includes("internal error"))).toEqual([]);
    await eventually(() => s.derp.clientCount() === 0, "the fuzz clients to be gone");
    const a = await DerpClient.connect({ url: s.url });
    const b = await DerpClient.connect({ url: s.url });
    a.send(b.publicKey, Buffer.from("after fuzz"));
    expect((await b.recvType("packet")).data.toString()).toBe("after fuzz");
    a.close();
    b.close();
  });
});

describe("DERP server timers and shutdown", () => {
  it("sends KeepAlive frames on its period", async () => {
    const s = await startServer(30);
    const c = await DerpClient.connect({ url: s.url });
    expect(await c.recv()).toEqual({ type: "keepAlive" });
    c.close();
    await s.close();
  });

  it("closes every client on close() and refuses new upgrades", async () => {
    const s = await startServer();
    const c = await DerpClient.connect({ url: s.url });
    s.derp.close();
    await c.closed;
    expect(s.derp.clientCount()).toBe(0);
    await expect(DerpClient.connect({ url: s.url })).rejects.toThrow(/503/);
    await s.close();
  });
});
