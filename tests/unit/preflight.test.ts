import https from "node:https";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { preflight, stunMappedAddress, stunRequest } from "../../src/cli/commands/preflight.ts";
import { makeLabTls } from "../../src/lab/tls.ts";
import { loadRecipe } from "../../src/recipe/load.ts";
import { freePort } from "../support/ports.ts";
import { startTs } from "../support/start-ts.ts";

/** preflight against 127.0.0.1:`port`: check name -> [status, because]. */
async function preflightLoopback(port: number) {
  const results = await preflight({ url: new URL(`https://127.0.0.1:${port}`), name: "127.0.0.1", port });
  return Object.fromEntries(results.map((r) => [r.check, [r.status, r.because]]));
}

describe("preflight", () => {
  it("builds the STUN request the going-live stun check sends as printf octal bytes", () => {
    const req = stunRequest(Buffer.from("wg3ways-stun"));
    const probe = loadRecipe("going-live")
      .exercises.find((e) => e.id === "stun")!
      .check.at(-1)!.run!;
    const octal = [...req].map((b) => `\\${b.toString(8).padStart(3, "0")}`).join("");
    expect(probe).toContain(`printf '${octal}'`);
  });

  it("reads the XOR-MAPPED-ADDRESS of a binding success for its own transaction only", () => {
    const txid = Buffer.from("0123456789ab");
    const attr = Buffer.alloc(12);
    attr.writeUInt16BE(0x0020, 0);
    attr.writeUInt16BE(8, 2);
    attr[5] = 1;
    attr.writeUInt16BE(41641 ^ 0x2112, 6);
    attr.writeUInt32BE((((10 << 24) | (66 << 16) | 40) ^ 0x2112a442) >>> 0, 8);
    const head = Buffer.alloc(20);
    head.writeUInt16BE(0x0101, 0);
    head.writeUInt16BE(attr.length, 2);
    head.writeUInt32BE(0x2112a442, 4);
    txid.copy(head, 8);
    const msg = Buffer.concat([head, attr]);
    expect(stunMappedAddress(msg, txid)).toBe("10.66.0.40:41641");
    expect(stunMappedAddress(msg, Buffer.from("another-txid"))).toBeUndefined();
  });

  it("reads an IPv4 client reported as an IPv4-mapped IPv6 address (Headscale's dual-stack STUN)", () => {
    const txid = Buffer.from("0123456789ab");
    const head = Buffer.alloc(20);
    head.writeUInt16BE(0x0101, 0);
    head.writeUInt16BE(24, 2);
    head.writeUInt32BE(0x2112a442, 4);
    txid.copy(head, 8);
    const attr = Buffer.alloc(24);
    attr.writeUInt16BE(0x0020, 0);
    attr.writeUInt16BE(20, 2);
    attr[5] = 2;
    attr.writeUInt16BE(41641 ^ 0x2112, 6);
    const mapped = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 66, 0, 1]);
    for (let k = 0; k < 16; k++) attr[8 + k] = mapped[k]! ^ head[4 + k]!;
    expect(stunMappedAddress(Buffer.concat([head, attr]), txid)).toBe("10.66.0.1:41641");
  });

  describe("skips what rests on a failed check, naming that check in because", () => {
    it("443 refused: tls and everything behind it rest on https; dns and stun are tried", async () => {
      const r = await preflightLoopback(await freePort());
      expect(r.https).toEqual(["fail", undefined]);
      for (const c of ["tls", "key", "ts2021", "server_url", "derp"]) expect(r[c]).toEqual(["skip", "https"]);
      expect(r.dns).toEqual(["ok", undefined]);
      expect(r.stun?.[0]).not.toBe("skip");
    });

    it("an untrusted certificate: the checks behind TLS rest on tls, and only they", async () => {
      // A certificate for the name from a CA preflight is not told to trust.
      const pki = await makeLabTls("127.0.0.1", ["127.0.0.1"], []);
      const server = https.createServer({ cert: pki.cert, key: pki.key }, (_req, res) => res.end());
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      try {
        const r = await preflightLoopback((server.address() as AddressInfo).port);
        expect(r.https).toEqual(["ok", undefined]);
        expect(r.tls).toEqual(["fail", undefined]);
        for (const c of ["key", "ts2021", "server_url", "derp"]) expect(r[c]).toEqual(["skip", "tls"]);
        expect(r.stun?.[0]).not.toBe("skip");
      } finally {
        server.close();
      }
    });
  });

  it("bad input gets one sentence and exit 2", async () => {
    for (const [args, sentence] of [
      [[], /^preflight needs the control server's URL/],
      [["http://headscale.example.com"], /^preflight checks an https:\/\/ URL/],
      [["https://headscale.example.com", "--dns", "resolver"], /^--dns wants a DNS server's IP address, not "resolver"\.$/],
      [["https://headscale.example.com", "--ca", "/nonexistent.pem"], /^--ca \/nonexistent\.pem cannot be read/],
    ] as const) {
      const r = await startTs(["preflight", ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(sentence);
    }
  });
});
