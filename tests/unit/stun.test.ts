import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bindingResponse, crc32, parseBindingRequest, STUN_MAGIC_COOKIE, startStun, stunFingerprint } from "../../src/control/stun.ts";

/** A Binding Request as Tailscale's net/stun builds it: SOFTWARE "tailnode", then FINGERPRINT. */
function tailscaleRequest(tx: Buffer): Buffer {
  const b = Buffer.alloc(20 + 12 + 8);
  b.writeUInt16BE(0x0001, 0);
  b.writeUInt16BE(12 + 8, 2);
  b.writeUInt32BE(STUN_MAGIC_COOKIE, 4);
  tx.copy(b, 8);
  b.writeUInt16BE(0x8022, 20);
  b.writeUInt16BE(8, 22);
  b.write("tailnode", 24, "latin1");
  b.writeUInt16BE(0x8028, 32);
  b.writeUInt16BE(4, 34);
  b.writeUInt32BE(stunFingerprint(b.subarray(0, 32)), 36);
  return b;
}

/** A bare RFC 5389 Binding Request with no attributes. */
function bareRequest(tx: Buffer): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(0x0001, 0);
  b.writeUInt32BE(STUN_MAGIC_COOKIE, 4);
  tx.copy(b, 8);
  return b;
}

/** Decodes XOR-MAPPED-ADDRESS from a success response, independently of the server's code. */
function decodeXorMapped(res: Buffer): { tx: Buffer; address: string; port: number } {
  expect(res.readUInt16BE(0)).toBe(0x0101);
  expect(res.readUInt32BE(4)).toBe(STUN_MAGIC_COOKIE);
  expect(res.length).toBe(20 + res.readUInt16BE(2));
  const tx = res.subarray(8, 20);
  let off = 20;
  while (off < res.length) {
    const type = res.readUInt16BE(off);
    const len = res.readUInt16BE(off + 2);
    if (type === 0x0020) {
      const fam = res[off + 5];
      const port = res.readUInt16BE(off + 6) ^ 0x2112;
      const mask = res.subarray(4, 20); // cookie then transaction id
      const raw = Buffer.from(res.subarray(off + 8, off + 8 + (fam === 1 ? 4 : 16)).map((x, i) => x ^ (mask[i] as number)));
      const address = fam === 1 ? [...raw].join(".") : Array.from({ length: 8 }, (_, i) => raw.readUInt16BE(i * 2).toString(16)).join(":");
      return { tx, address, port };
    }
    off += 4 + ((len + 3) & ~3);
  }
  throw new Error("no XOR-MAPPED-ADDRESS");
}

function ask(
  host: string,
  port: number,
  packets: Buffer[],
): Promise<{ res: Buffer; local: dgram.RemoteInfo | { address: string; port: number } }> {
  const type = host.includes(":") ? "udp6" : "udp4";
  const sock = dgram.createSocket(type);
  return new Promise((resolve, reject) => {
    sock.once("error", reject);
    sock.once("message", (res) => {
      const local = sock.address();
      sock.close();
      resolve({ res, local });
    });
    sock.bind(0, host, () => {
      for (const p of packets) sock.send(p, port, host);
    });
  });
}

describe("STUN encoding", () => {
  it("matches the XOR-MAPPED-ADDRESS bytes of RFC 5769's sample responses", () => {
    const tx = Buffer.from("b7e7a701bc34d686fa87dfae", "hex");
    // RFC 5769 §2.2 (IPv4 192.0.2.1:32853) and §2.3 (IPv6 2001:db8:1234:5678:11:2233:4455:6677 port 32853).
    expect(bindingResponse(tx, "192.0.2.1", 32853).subarray(20).toString("hex")).toBe("002000080001a147e112a643");
    expect(bindingResponse(tx, "2001:db8:1234:5678:11:2233:4455:6677", 32853).subarray(20).toString("hex")).toBe(
      "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9",
    );
    expect(bindingResponse(tx, "::ffff:192.0.2.1", 32853).subarray(20).toString("hex")).toBe("002000080001a147e112a643");
    const r = bindingResponse(tx, "::1", 1);
    expect(r.subarray(0, 20).toString("hex")).toBe(`01010018${"2112a442"}${tx.toString("hex")}`);
  });

  it("computes CRC-32 like zlib and accepts Tailscale's and bare requests", () => {
    expect(crc32(Buffer.from("123456789"))).toBe(0xcbf43926); // the CRC-32/IEEE check value
    const tx = randomBytes(12);
    expect(parseBindingRequest(tailscaleRequest(tx))?.equals(tx)).toBe(true);
    expect(parseBindingRequest(bareRequest(tx))?.equals(tx)).toBe(true);
  });

  it("rejects non-STUN, non-Binding, truncated and wrongly fingerprinted packets", () => {
    const tx = randomBytes(12);
    const good = tailscaleRequest(tx);
    const badFp = Buffer.from(good);
    badFp[39] = (badFp[39] as number) ^ 1;
    const notBinding = Buffer.from(good);
    notBinding.writeUInt16BE(0x0101, 0);
    const noCookie = Buffer.from(good);
    noCookie[4] = 0;
    const tooLong = Buffer.from(good);
    tooLong.writeUInt16BE(100, 2);
    const badAttr = Buffer.from(good);
    badAttr.writeUInt16BE(200, 22);
    for (const p of [badFp, notBinding, noCookie, tooLong, badAttr, good.subarray(0, 19), Buffer.from("GET / HTTP/1.1\r\n\r\nxxxx")]) {
      expect(parseBindingRequest(p)).toBeNull();
    }
  });
});

describe("STUN responder over UDP", () => {
  let stun: { port: number; close(): Promise<void> };
  beforeAll(async () => {
    stun = await startStun({ port: 0 });
  });
  afterAll(async () => {
    await stun.close();
  });

  it("answers a Tailscale binding request on 127.0.0.1 with the sender's address and port", async () => {
    const tx = randomBytes(12);
    const { res, local } = await ask("127.0.0.1", stun.port, [tailscaleRequest(tx)]);
    const got = decodeXorMapped(res);
    expect(got.tx.equals(tx)).toBe(true);
    expect(got.address).toBe("127.0.0.1");
    expect(got.port).toBe(local.port);
  });

  it("ignores junk and answers the valid request that follows it", async () => {
    const tx = randomBytes(12);
    const badFp = tailscaleRequest(randomBytes(12));
    badFp[39] = (badFp[39] as number) ^ 0xff;
    const { res } = await ask("127.0.0.1", stun.port, [randomBytes(50), Buffer.from("hello"), badFp, bareRequest(tx)]);
    expect(decodeXorMapped(res).tx.equals(tx)).toBe(true);
  });

  it("answers over IPv6 on ::1 when the host has IPv6", async (ctx) => {
    const probe = dgram.createSocket("udp6");
    const has6 = await new Promise<boolean>((resolve) => {
      probe.once("error", () => resolve(false));
      probe.bind(0, "::1", () => resolve(true));
    });
    probe.close();
    if (!has6) ctx.skip();
    const tx = randomBytes(12);
    const { res, local } = await ask("::1", stun.port, [tailscaleRequest(tx)]);
    const got = decodeXorMapped(res);
    expect(got.tx.equals(tx)).toBe(true);
    expect(got.address).toBe("0:0:0:0:0:0:0:1");
    expect(got.port).toBe(local.port);
  });

  it("binds a given IPv4 host", async () => {
    const s4 = await startStun({ host: "127.0.0.1", port: 0 });
    const { res, local } = await ask("127.0.0.1", s4.port, [bareRequest(randomBytes(12))]);
    expect(decodeXorMapped(res).port).toBe(local.port);
    await s4.close();
  });
});
