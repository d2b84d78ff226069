import { randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import { decompress } from "fzstd";
import { describe, expect, it } from "vitest";
import { formatKey, keyPairFrom, parseKey } from "../../src/control/keys.ts";
import {
  encodeRecord,
  errorFrame,
  HandshakeError,
  initiate,
  MAX_FRAME,
  MAX_PLAINTEXT,
  NoiseConn,
  open,
  respond,
} from "../../src/control/noise.ts";
import { mapFrame, zstdStored } from "../../src/control/zstd.ts";

const fill = (b: number) => new Uint8Array(32).fill(b);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

// Known answers (computed by two independent
// implementations); static keys 0x11 (server), 0x22 (machine), 0x33/0x44 (ephemerals), capver 106.
const KAT = {
  serverPub: "mkey:7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13",
  machinePub: "mkey:0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20",
  initiation:
    "006a0100607b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a1b14b903b541e3810f9a9f788541f1d8f2ec482568e39b9f0f56a9f4a7a56450f31a2e30da91cdced81805346f6e88859c0c5fcddd647d032ca62ef29175dfa8c676",
  response: "020030ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c1fff3e6b39b52da6947409a29af8f214774e93f5",
  handshakeHash: "881d0b774e988cceb9d945b68eb2c7e6592545481685a8458a537c65a30080dd",
  c2s: "97bb1ff1b3c0030ed1e8f7d54ad3728ad885ba618751ae88d5a752c3c5f31027",
  s2c: "67e4e0ae881d024a7aef742740ca594e486443a61ac5362959c6b1350e8e5ab0",
  hello0: "0400159f21fcc5ff6d62c30f202a451b042053172347c44a",
  hello1: "040015c5a784179f0fe21f841fc342caf5756defdbb9e197",
  keepAliveZstd: "28b52ffda0120000009100007b224b656570416c697665223a747275657d",
};

describe("keys", () => {
  it("round-trips the prefixed hex form and rejects empty, bare or short keys", () => {
    const k = randomBytes(32);
    expect(parseKey("nodekey", formatKey("nodekey", k))).toEqual(Uint8Array.from(k));
    expect(parseKey("mkey", `mkey:${hex(k).toUpperCase()}`)).toEqual(Uint8Array.from(k));
    expect(() => parseKey("nodekey", "")).toThrow();
    expect(() => parseKey("nodekey", hex(k))).toThrow();
    expect(() => parseKey("nodekey", `mkey:${hex(k)}`)).toThrow();
    expect(() => parseKey("nodekey", `nodekey:${hex(k).slice(2)}`)).toThrow();
  });
  it("derives the known public keys", () => {
    expect(formatKey("mkey", keyPairFrom(fill(0x11)).publicKey)).toBe(KAT.serverPub);
    expect(formatKey("mkey", keyPairFrom(fill(0x22)).publicKey)).toBe(KAT.machinePub);
  });
});

describe("Noise IK handshake (known answers)", () => {
  const server = keyPairFrom(fill(0x11));
  const machine = keyPairFrom(fill(0x22));
  const ei = keyPairFrom(fill(0x33));
  const er = keyPairFrom(fill(0x44));

  it("the initiator builds the known initiation", () => {
    expect(initiate(machine, server.publicKey, 106, ei).initiation.toString("hex")).toBe(KAT.initiation);
  });

  it("the responder answers it with the known response and transport keys", () => {
    const { response, result } = respond(server, Buffer.from(KAT.initiation, "hex"), er);
    expect(response.toString("hex")).toBe(KAT.response);
    expect(formatKey("mkey", result.machineKey)).toBe(KAT.machinePub);
    expect(result.version).toBe(106);
    expect(result.handshakeHash.toString("hex")).toBe(KAT.handshakeHash);
    expect(result.rxKey.toString("hex")).toBe(KAT.c2s);
    expect(result.txKey.toString("hex")).toBe(KAT.s2c);
  });

  it("the initiator finishes on the known response with the same keys", () => {
    const keys = initiate(machine, server.publicKey, 106, ei).finish(Buffer.from(KAT.response, "hex"));
    expect(keys.txKey.toString("hex")).toBe(KAT.c2s);
    expect(keys.rxKey.toString("hex")).toBe(KAT.s2c);
  });

  it("transport records use a big-endian nonce: the known 'hello' records at nonce 0 and 1", () => {
    const k = Buffer.from(KAT.s2c, "hex");
    expect(encodeRecord(k, 0n, Buffer.from("hello")).toString("hex")).toBe(KAT.hello0);
    expect(encodeRecord(k, 1n, Buffer.from("hello")).toString("hex")).toBe(KAT.hello1);
    // Negative control: a little-endian nonce (stock Noise) cannot open record 1.
    const le = Buffer.alloc(12);
    le.writeBigUInt64LE(1n, 4);
    expect(() => open(k, le, Buffer.from(KAT.hello1, "hex").subarray(3))).toThrow();
  });

  it("refuses malformed initiations with an error, and the error frame says why", () => {
    const good = Buffer.from(KAT.initiation, "hex");
    expect(() => respond(server, good.subarray(0, 100))).toThrow(HandshakeError);
    const badType = Buffer.from(good);
    badType[2] = 2;
    expect(() => respond(server, badType)).toThrow(HandshakeError);
    const badTag = Buffer.from(good);
    badTag[90]! ^= 1;
    expect(() => respond(server, badTag)).toThrow(/handshake failed/);
    const f = errorFrame("bad");
    expect([...f]).toEqual([3, 0, 3, 98, 97, 100]);
  });

  it("survives random initiations for a bounded time (fuzz): only HandshakeErrors, never a crash", () => {
    const until = Date.now() + 1500;
    let n = 0;
    while (Date.now() < until) {
      const len = n % 3 === 0 ? 101 : Math.floor(Math.random() * 300);
      const b = randomBytes(len);
      if (n % 2 === 0 && len === 101) {
        b[2] = 1;
        b.writeUInt16BE(96, 3);
      }
      expect(() => respond(server, b)).toThrow(HandshakeError);
      n++;
    }
    expect(n).toBeGreaterThan(100);
  });
});

describe("Noise transport stream", () => {
  const pair = () => {
    const server = keyPairFrom(fill(0x11));
    const hs = initiate(keyPairFrom(fill(0x22)), server.publicKey, 106);
    const { response, result } = respond(server, hs.initiation);
    const ck = hs.finish(response);
    const a = new PassThrough();
    const b = new PassThrough();
    const wireAtoB: Buffer[] = [];
    const client = new NoiseConn(new DuplexPair(b, a, wireAtoB), ck);
    const srv = new NoiseConn(new DuplexPair(a, b), result);
    return { client, srv, wireAtoB };
  };

  it("splits a 10 KB write into 3 records of at most 4096 bytes and reassembles it", async () => {
    const { client, srv, wireAtoB } = pair();
    const data = randomBytes(10_000);
    const got: Buffer[] = [];
    srv.on("data", (d: Buffer) => got.push(d));
    client.write(data);
    await new Promise<void>((r) => {
      const check = () => (Buffer.concat(got).length >= data.length ? r() : setImmediate(check));
      check();
    });
    expect(Buffer.concat(got)).toEqual(data);
    const wire = Buffer.concat(wireAtoB);
    const sizes: number[] = [];
    for (let o = 0; o < wire.length; ) {
      const len = wire.readUInt16BE(o + 1);
      sizes.push(3 + len);
      o += 3 + len;
    }
    expect(sizes.length).toBe(3);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_FRAME);
    expect(sizes[0]).toBe(3 + MAX_PLAINTEXT + 16);
  });

  it("destroys the stream on a record that is too long, of the wrong type, or forged", async () => {
    for (const bad of [
      Buffer.from([4, 0x10, 0x00]), // 4096 + 3 > MAX_FRAME
      Buffer.from([2, 0, 16, ...new Uint8Array(16)]),
      Buffer.from([4, 0, 17, ...randomBytes(17)]),
    ]) {
      const { srv } = pair();
      const closed = new Promise((r) => srv.on("close", r));
      srv.on("error", () => {});
      (srv.socket as DuplexPair).inject(bad);
      await closed;
      expect(srv.destroyed).toBe(true);
    }
  });
});

describe("zstd map frames", () => {
  it("the keep-alive frame matches the known answer and an independent decoder reads it", () => {
    const z = zstdStored(Buffer.from('{"KeepAlive":true}'));
    expect(z.toString("hex")).toBe(KAT.keepAliveZstd);
    expect(Buffer.from(decompress(z)).toString()).toBe('{"KeepAlive":true}');
  });
  it("a 300 KB message spans several raw blocks and decodes intact; the length prefix is little-endian", () => {
    const msg = { Peers: Array.from({ length: 3000 }, (_, i) => ({ ID: i, Name: `n${i}.example.com.`, pad: "x".repeat(60) })) };
    const f = mapFrame(msg);
    expect(f.readUInt32LE(0)).toBe(f.length - 4);
    const json = Buffer.from(decompress(f.subarray(4))).toString();
    expect(JSON.parse(json)).toEqual(msg);
    expect(json.length).toBeGreaterThan(131072 * 2);
  });
  it("an empty payload is one empty last block", () => {
    expect(Buffer.from(decompress(zstdStored(new Uint8Array(0)))).length).toBe(0);
  });
});

import { Duplex } from "node:stream";

/** Two PassThroughs as one socket: reads from `rx`, writes to `tx` (optionally recording them). */
class DuplexPair extends Duplex {
  constructor(
    rx: PassThrough,
    private readonly tx: PassThrough,
    private readonly record?: Buffer[],
  ) {
    super();
    rx.on("data", (d: Buffer) => this.push(d));
    rx.on("end", () => this.push(null));
  }
  inject(b: Buffer): void {
    this.push(b);
  }
  override _read(): void {}
  override _write(c: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.record?.push(c);
    this.tx.write(c, cb);
  }
}
