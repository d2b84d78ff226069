import { createHash, randomBytes } from "node:crypto";
import { Duplex, PassThrough } from "node:stream";
import { decompress } from "fzstd";
import { describe, expect, it } from "vitest";
import { LengthPrefixedFrames, zstdDecode } from "../../src/control/client.ts";
import { dh, keyPairFrom, nativeX25519, newKeyPair } from "../../src/control/keys.ts";
import { encodeRecord, initiate, MAX_PLAINTEXT, NoiseConn, RecordOpener, respond, seal } from "../../src/control/noise.ts";
import { mapFrameJson, storedContent, zstdStored } from "../../src/control/zstd.ts";

/** Large buffers compared by digest: a deep equal of 300 KB byte by byte takes seconds. */
const digest = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

// The client's receive path, made cheap for the load generator: each piece must give exactly
// what the plain path gives.

describe("X25519 through node:crypto", () => {
  it("derives the same public keys and shared secrets as noble's", () => {
    for (let i = 0; i < 20; i++) {
      const a = nativeX25519.newKeyPair();
      expect(keyPairFrom(a.privateKey).publicKey).toEqual(a.publicKey);
      const b = newKeyPair();
      expect(nativeX25519.dh(a, b.publicKey)).toEqual(dh(a.privateKey, b.publicKey));
      expect(nativeX25519.dh(b, a.publicKey)).toEqual(dh(b.privateKey, a.publicKey));
    }
  });
  it("refuses a low-order peer key, as dh() does", () => {
    const a = nativeX25519.newKeyPair();
    expect(() => dh(a.privateKey, new Uint8Array(32))).toThrow();
    expect(() => nativeX25519.dh(a, new Uint8Array(32))).toThrow(/low-order/);
  });
});

describe("RecordOpener", () => {
  it("opens records sealed at counters 0, 1, ... like open() with a big-endian nonce, and refuses a forged one", () => {
    const key = randomBytes(32);
    const o = new RecordOpener(key);
    for (let c = 0; c < 5; c++) {
      const pt = randomBytes(100 + c);
      const rec = encodeRecord(key, BigInt(c), pt);
      expect(o.open(rec.subarray(3))).toEqual(pt);
    }
    const forged = seal(key, Buffer.alloc(12), randomBytes(10));
    expect(() => o.open(forged)).toThrow(/authentication/);
  });
});

/** A server-side NoiseConn writing to a client-side one through a pipe that re-cuts the bytes at random. */
function clientServerPair(recut = true) {
  const server = keyPairFrom(new Uint8Array(32).fill(0x11));
  const hs = initiate(nativeX25519.newKeyPair(), server.publicKey, 138);
  const { response, result } = respond(server, hs.initiation);
  const ck = hs.finish(response);
  const toClient = new PassThrough();
  const toServer = new PassThrough();
  const serverSock = new PipeEnd(toServer, toClient);
  const clientSock = new PipeEnd(toClient, toServer, recut);
  const srv = new NoiseConn(serverSock, result);
  const client = new NoiseConn(clientSock, ck, {}, undefined, { client: true });
  return { srv, client, serverSock, ck: result };
}

function collect(s: Duplex, bytes: number): Promise<Buffer> {
  const got: Buffer[] = [];
  let n = 0;
  return new Promise((resolve) => {
    s.on("data", (d: Buffer) => {
      got.push(d);
      n += d.length;
      if (n >= bytes) resolve(Buffer.concat(got));
    });
  });
}

describe("NoiseConn, the client's receive path", () => {
  it("hands on the server's bytes intact however the socket cuts them", async () => {
    const { srv, client } = clientServerPair();
    const data = randomBytes(200_000);
    const got = collect(client, data.length);
    for (let o = 0; o < data.length; o += 7000) srv.write(data.subarray(o, o + 7000));
    expect(digest(await got)).toBe(digest(data));
  });

  it("pushes the records of one socket read as one chunk", async () => {
    const { srv, client } = clientServerPair(false);
    const data = randomBytes(200_000);
    const got = collect(client, data.length);
    let chunks = 0;
    client.on("data", () => chunks++);
    srv.write(data);
    expect(digest(await got)).toBe(digest(data));
    expect(Math.ceil(data.length / MAX_PLAINTEXT)).toBeGreaterThan(40);
    expect(chunks).toBe(1);
  });

  it("skips Headscale's early payload, even split across records, and keeps what follows", async () => {
    const { srv, client } = clientServerPair();
    const early = Buffer.from(JSON.stringify({ nodeKeyChallenge: `chalpub:${"ab".repeat(32)}` }));
    const head = Buffer.alloc(9);
    Buffer.from([0xff, 0xff, 0xff, 0x54, 0x53]).copy(head);
    head.writeUInt32BE(early.length, 5);
    const h2 = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    const got = collect(client, h2.length);
    const all = Buffer.concat([head, early, h2]);
    srv.write(all.subarray(0, 4));
    srv.write(all.subarray(4, 30));
    srv.write(all.subarray(30));
    expect(await got).toEqual(h2);
  });

  it("passes the stream through when there is no early payload", async () => {
    const { srv, client } = clientServerPair();
    const h2 = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    const got = collect(client, h2.length);
    srv.write(h2.subarray(0, 3));
    srv.write(h2.subarray(3));
    expect(await got).toEqual(h2);
  });

  it("destroys the stream on a forged record", async () => {
    const { client, serverSock } = clientServerPair();
    const closed = new Promise((r) => client.on("close", r));
    client.on("error", () => {});
    serverSock.write(encodeRecord(randomBytes(32), 0n, Buffer.from("forged")));
    await closed;
    expect(client.destroyed).toBe(true);
  });
});

describe("map stream framing", () => {
  it("gives each length-prefixed frame whole, whatever the chunking (also inside the length prefix)", () => {
    const frames = [0, 1, 5, 4096, 70_000, 3, 300_000].map((n) => randomBytes(n));
    const wire = Buffer.concat(
      frames.map((f) => {
        const h = Buffer.alloc(4);
        h.writeUInt32LE(f.length);
        return Buffer.concat([h, f]);
      }),
    );
    for (const cut of [1, 2, 3, 4093, 16_384, wire.length]) {
      const r = new LengthPrefixedFrames();
      const got: Buffer[] = [];
      for (let o = 0; o < wire.length; o += cut) r.push(wire.subarray(o, o + cut), (f) => got.push(Buffer.from(f)));
      expect(got.map(digest)).toEqual(frames.map(digest));
    }
  });
});

describe("zstd map frames, the client's decoder", () => {
  const json =
    '{"PeersChanged":[{"ID":7,"Name":"a.example.com.","Endpoints":["1.2.3.4:5"]},{"ID":8,"Name":"b.example.com.","Endpoints":["1.2.3.4:5"]},{"ID":9,"Name":"c.example.com.","Endpoints":["1.2.3.4:5"]}]}';

  it("reads stored frames (one raw block, several, none) without a decompressor, as fzstd does", () => {
    for (const n of [0, 1, 1000, 128 * 1024, 300_000]) {
      const data = randomBytes(n);
      const z = zstdStored(data);
      expect(digest(storedContent(z)!)).toBe(digest(data));
      expect(digest(decompress(z))).toBe(digest(data));
    }
    const frame = mapFrameJson(json).subarray(4);
    expect(zstdDecode(frame).toString()).toBe(json);
  });

  it("reads an RLE block, a window descriptor and a checksum", () => {
    // Not single-segment (window descriptor 0x00), no content size, checksum: raw "ab" then RLE "x" x 5.
    const z = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x00, 0x10, 0, 0, 0x61, 0x62, 0x2b, 0, 0, 0x78, 1, 2, 3, 4]);
    expect(Buffer.from(storedContent(z)!).toString()).toBe("abxxxxx");
    expect(Buffer.from(decompress(z)).toString()).toBe("abxxxxx");
  });

  it("leaves compressed frames, and ones that do not add up, to fzstd", () => {
    // `zstd -19 --no-check` of the JSON above.
    const compressed = Buffer.from(
      "28b52ffd20c3ed020022051319706f0e0e3e785a422dc2aaa91f4b7bde3251cd48fbaaff4308d98b8763b4ec9de061850d16b8e357168dea24a9f2f69d356e4bd384572f3cbf2764de0a7eb21c737cd90f85105251ddcdb105000014505c20325084f1833203",
      "hex",
    );
    expect(storedContent(compressed)).toBeUndefined();
    expect(zstdDecode(compressed).toString()).toBe(json);
    const stored = zstdStored(Buffer.from("hello"));
    expect(storedContent(stored.subarray(0, stored.length - 1))).toBeUndefined(); // truncated
    expect(storedContent(Buffer.concat([stored, Buffer.from([0])]))).toBeUndefined(); // trailing bytes
    const wrongSize = Buffer.from(stored);
    wrongSize.writeUInt32LE(4, 5);
    expect(storedContent(wrongSize)).toBeUndefined();
    expect(() => zstdDecode(Buffer.from("not zstd"))).toThrow();
  });
});

/** One end of a pipe: reads from `rx`, writes to `tx`; `recut` re-slices incoming bytes at random. */
class PipeEnd extends Duplex {
  constructor(
    rx: PassThrough,
    private readonly tx: PassThrough,
    recut = false,
  ) {
    super();
    rx.on("data", (d: Buffer) => {
      if (!recut) return void this.push(d);
      for (let o = 0; o < d.length; ) {
        const n = 1 + Math.floor(Math.random() * 9000);
        this.push(d.subarray(o, o + n));
        o += n;
      }
    });
    rx.on("end", () => this.push(null));
  }
  override _read(): void {}
  override _write(c: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.tx.write(c, cb);
  }
}
