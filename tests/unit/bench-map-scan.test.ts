import { describe, expect, it } from "vitest";
import { ScanCache, scanMap, summarizeMap } from "../../bench/control/map-scan.ts";
import { zstdStored } from "../../src/control/zstd.ts";
import { REAL_REGISTER } from "../../tests/unit/control-fixtures/requests.ts";

// The load generator reads map messages with scanMap; it must agree with JSON.parse on every
// message a server may send, in any of the encodings servers use.

const hostinfo = { ...REAL_REGISTER.Hostinfo, Hostname: "sim-1" };
const peer = (id: number, extra: Record<string, unknown> = {}) => ({
  ID: id,
  StableID: `n${id}`,
  Name: `sim-${id}.bench.example.com.`,
  Key: `nodekey:${"ab".repeat(32)}`,
  Addresses: [`100.64.0.${id}/32`],
  Endpoints: [`198.51.100.${id}:41641`, `[2001:db8::${id}]:41641`],
  Hostinfo: hostinfo,
  Online: true,
  ...extra,
});

/** Messages as the null, builtin and Headscale servers send them (shapes, not their exact bytes). */
const MESSAGES: Record<string, unknown>[] = [
  { Node: peer(1), Peers: [peer(2), peer(3)] },
  {
    KeepAlive: false,
    Node: peer(1),
    DERPMap: { Regions: { "999": { RegionID: 999, Nodes: [{ Name: "999a", HostName: "derp", DERPPort: 443 }] } } },
    DNSConfig: { Resolvers: [{ Addr: "1.1.1.1" }], Domains: ["bench.example.com"] },
    Domain: "bench.example.com",
    PacketFilter: [{ SrcIPs: ["*"], DstPorts: [{ IP: "*", Ports: { First: 0, Last: 65535 } }] }],
    UserProfiles: [{ ID: 1, LoginName: "bench", DisplayName: "bench <&> \u00e9\u4e2d" }],
    Peers: [peer(2, { Tags: ["tag:a"] }), peer(3, { Endpoints: null }), peer(4, { Endpoints: [] })],
    ControlTime: "2026-01-01T00:00:00Z",
  },
  { PeersChanged: [peer(1), peer(5)] },
  {
    PeersChangedPatch: [
      { NodeID: 2, Endpoints: ["a:1", "b:2"] },
      { NodeID: 3, Online: false },
      { NodeID: 4, DERPRegion: 999 },
    ],
  },
  { PeersRemoved: [2, 3] },
  { PeersRemoved: null, PeersChanged: null, PeersChangedPatch: null, Peers: null },
  { KeepAlive: true },
  {},
  { Node: null, Peers: [] },
  { Node: { Name: "no-id" }, Peers: [{ Name: "no id either" }] },
  { Node: { ID: "n-string" }, Peers: [{ ID: "s2" }, { ID: 1.5e3 }, { ID: null }] },
  { Node: peer(1), Peers: { not: "an array" } },
  { MapSessionHandle: "h", Seq: 7, PeersChanged: [peer(9, { Hostinfo: { Note: 'quote " and \\ backslash }]{[', Nested: [[[]], {}] } })] },
];

/** The same message as each server might encode it: compact, pretty, Go's HTML escaping. */
function encodings(m: Record<string, unknown>): string[] {
  const compact = JSON.stringify(m);
  const goEscaped = compact.replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
  return [compact, JSON.stringify(m, null, 2), JSON.stringify(m, null, "\t").replace(/\n/g, "\r\n"), ` ${goEscaped} \n`];
}

const withoutEndpoints = (s: ReturnType<typeof summarizeMap>) => {
  const strip = (ps: { id: string }[]) => ps.map((p) => ({ id: p.id }));
  return { ...s, ...(s.peers ? { peers: strip(s.peers) } : {}), changed: strip(s.changed), patched: strip(s.patched) };
};

describe("control-plane benchmark: reading map messages", () => {
  it("agrees with JSON.parse on every message shape and encoding", () => {
    for (const m of MESSAGES)
      for (const text of encodings(m)) {
        const want = summarizeMap(JSON.parse(text));
        expect(scanMap(Buffer.from(text)), text.slice(0, 80)).toEqual(want);
        expect(scanMap(Buffer.from(text), false)).toEqual(withoutEndpoints(want));
      }
  });

  it("reads escaped member names, odd number forms and the last of repeated members as JSON.parse does", () => {
    for (const text of [
      '{"\\u0050eers":[{"\\u0049D":7,"Endpoints":["x:1"]}],"No\\u0064e":{"ID":1}}',
      '{"Peers":[{"ID":1}],"Peers":[{"ID":2},{"ID":3}],"Node":{"ID":1},"Node":null}',
      '{"Node":{"ID":1,"ID":2},"PeersRemoved":[1],"PeersRemoved":["x"]}',
      '{"Peers":[{"ID":2}],"Peers":null}',
      '{"Node":{"ID":-0},"Peers":[{"ID":1.5e3},{"ID":1E2},{"ID":0},{"ID":12345678901234567890},{"ID":"\u0031"}]}',
    ])
      expect(scanMap(Buffer.from(text)), text).toEqual(summarizeMap(JSON.parse(text)));
  });

  it("agrees with JSON.parse on random messages (bounded fuzz)", () => {
    let seed = 42;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)]!;
    const value = (depth: number): unknown => {
      const k = Math.floor(rnd() * (depth > 2 ? 5 : 7));
      if (k === 0) return Math.floor(rnd() * 1e6) - 500;
      if (k === 1) return pick(["", "a", 'q"uote', "back\\slash", "\u00e9\u4e2d\ud83d\ude00", "}]", "{["]);
      if (k === 2) return pick([true, false, null, 1.25e-3]);
      if (k === 3) return pick(["ID", "Endpoints", "NodeID"]);
      if (k === 4) return rnd() < 0.5 ? [] : {};
      if (k === 5) return Array.from({ length: Math.floor(rnd() * 4) }, () => value(depth + 1));
      return Object.fromEntries(
        Array.from({ length: Math.floor(rnd() * 4) }, () => [pick(["ID", "x", "Hostinfo", "Endpoints", "e\\"]), value(depth + 1)]),
      );
    };
    const randomPeer = (idKey: string) => {
      const p: Record<string, unknown> = { Hostinfo: value(0) };
      if (rnd() < 0.9) p[idKey] = pick([Math.floor(rnd() * 5000), `s${Math.floor(rnd() * 99)}`, 0, 10]);
      if (rnd() < 0.7) p.Endpoints = pick([null, [], ["1.2.3.4:5"], ["[::1]:2", "a:b"]]);
      p.Other = value(0);
      return p;
    };
    for (let i = 0; i < 2000; i++) {
      const m: Record<string, unknown> = {};
      const parts = ["Node", "Peers", "PeersChanged", "PeersChangedPatch", "PeersRemoved", "DERPMap", "Domain"].filter(() => rnd() < 0.5);
      for (const key of parts) {
        if (key === "Node") m.Node = rnd() < 0.8 ? randomPeer("ID") : pick([null, 0, "s", [1]]);
        else if (key === "PeersRemoved") m.PeersRemoved = pick([null, [1, 2], ["a"], []]);
        else if (key.startsWith("Peers"))
          m[key] =
            rnd() < 0.1
              ? null
              : Array.from({ length: Math.floor(rnd() * 5) }, () => randomPeer(key === "PeersChangedPatch" ? "NodeID" : "ID"));
        else m[key] = value(0);
      }
      const text = pick(encodings(m));
      expect(scanMap(Buffer.from(text)), text).toEqual(summarizeMap(JSON.parse(text)));
    }
  });

  it("throws on malformed messages rather than read past them", () => {
    for (const text of [
      '{"Peers":[{"ID":1}',
      '{"Peers":[{"ID":1}]',
      '{"Peers" [1]}',
      '{"Peers":[1]}',
      '["Peers"]',
      '{"a":"unterminated}',
      '{"a":1} x',
      "",
      '{"a":}',
    ])
      expect(() => scanMap(Buffer.from(text)), text).toThrow();
  });
});

describe("control-plane benchmark: the scan cache", () => {
  it("answers a repeated frame from the cache, and reads anything that differs by a byte, the endpoints flag or size", () => {
    const cache = new ScanCache(2, 200);
    const json = (id: number) => Buffer.from(`{"PeersChanged":[{"ID":${id},"Endpoints":["a:1"]}]}`);
    const a = zstdStored(json(1));
    const b = zstdStored(json(2));
    const first = cache.scan(a, true);
    expect(first).toEqual(scanMap(json(1), true));
    expect(cache.scan(Buffer.from(a), true)).toBe(first);
    expect(cache.scan(b, true)).toEqual(scanMap(json(2), true));
    expect(cache.scan(a, false)).toEqual(scanMap(json(1), false));
    // Two entries only: a was pushed out by b and a-without-endpoints.
    expect(cache.scan(a, true)).not.toBe(first);
    const bigJson = Buffer.from(JSON.stringify({ PeersChanged: [{ ID: 3, Hostinfo: { Pad: "x".repeat(300) } }] }));
    const big = zstdStored(bigJson);
    expect(cache.scan(big, false)).toEqual(scanMap(bigJson, false));
    expect(cache.scan(big, false)).not.toBe(cache.scan(big, false));
  });

  it("reads compressed frames too (Headscale's)", () => {
    // `zstd -19 --no-check` of a PeersChanged message with IDs 7, 8 and 9.
    const compressed = Buffer.from(
      "28b52ffd20c3ed020022051319706f0e0e3e785a422dc2aaa91f4b7bde3251cd48fbaaff4308d98b8763b4ec9de061850d16b8e357168dea24a9f2f69d356e4bd384572f3cbf2764de0a7eb21c737cd90f85105251ddcdb105000014505c20325084f1833203",
      "hex",
    );
    const cache = new ScanCache();
    expect(cache.scan(compressed, false).changed.map((p) => p.id)).toEqual(["7", "8", "9"]);
    expect(cache.scan(compressed, true).changed.map((p) => p.endpoints)).toEqual([["1.2.3.4:5"], ["1.2.3.4:5"], ["1.2.3.4:5"]]);
  });
});
