import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { formatKey, newKeyPair } from "../../src/control/keys.ts";
import { fullMapResponse, type MapperConfig } from "../../src/control/mapper.ts";
import { StateStore } from "../../src/control/store.ts";
import { Tailnet } from "../../src/control/tailnet.ts";
import { decodeMap, decodeRegister, endpoint, prefix, RequestError } from "../../src/control/validate.ts";
import { mutate, prng } from "./control-fixtures/mutate.ts";
import { REAL_MAP, REAL_MAP_STREAM, REAL_REGISTER } from "./control-fixtures/requests.ts";

/**
 * What a client sends is decoded into our own types as strictly as Go's encoding/json would
 * decode it on the peers' side. The oracle here is written independently of validate.ts: the
 * Go types of tailcfg.Node's fields, checked on every node of a map built from accepted input.
 */

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "wg3-validate-"));
  dirs.push(d);
  return d;
};
const mapper: MapperConfig = {
  baseDomain: "tailnet.test",
  domain: "tailnet.test",
  derp: { regionId: 999, regionCode: "t", regionName: "t", hostName: "127.0.0.1", port: 443, stunPort: 3478 },
  nameservers: [],
};

// ---- the oracle: what Go's json.Unmarshal into tailcfg.Node accepts ----

type GoType =
  | "string"
  | "bool"
  | "optbool"
  | "int"
  | "uint16"
  | "float"
  | "prefix"
  | "addrport"
  | { list: GoType }
  | { map: GoType }
  | "skip";
const KEY = (prefix: string) => new RegExp(`^${prefix}:[0-9a-fA-F]{64}$`);
const HOSTINFO: Record<string, GoType | Record<string, GoType>> = {
  ...Object.fromEntries(
    "IPNVersion FrontendLogID BackendLogID OS OSVersion Env Distro DistroVersion DistroCodeName App Package DeviceModel PushDeviceToken Hostname Machine GoArch GoArchVar GoVersion Cloud ServicesHash ExitNodeID"
      .split(" ")
      .map((k) => [k, "string"]),
  ),
  ...Object.fromEntries("Container Desktop Userspace UserspaceRouter AppConnector StateEncrypted".split(" ").map((k) => [k, "optbool"])),
  ...Object.fromEntries(
    "ShieldsUp ShareeNode NoLogsNoSupport RemoteConfig WireIngress IngressEnabled AllowsUpdate PeerRelay"
      .split(" ")
      .map((k) => [k, "bool"]),
  ),
  RoutableIPs: { list: "prefix" },
  RequestTags: { list: "string" },
  WoLMACs: { list: "string" },
  sshHostKeys: { list: "string" },
  Services: { list: "skip" },
  Location: "skip",
  TPM: "skip",
  NetInfo: {
    ...Object.fromEntries(
      "MappingVariesByDestIP WorkingIPv6 OSHasIPv6 WorkingUDP WorkingICMPv4 UPnP PMP PCP".split(" ").map((k) => [k, "optbool"]),
    ),
    HavePortMap: "bool",
    PreferredDERP: "int",
    LinkType: "string",
    FirewallMode: "string",
    DERPLatency: { map: "float" },
  } as Record<string, GoType>,
};

function goAccepts(t: GoType, v: unknown): boolean {
  if (t === "skip") return true;
  if (typeof t === "object") {
    if (v === null) return true;
    if ("list" in t) return Array.isArray(v) && v.every((x) => goAccepts(t.list, x));
    return typeof v === "object" && !Array.isArray(v) && Object.values(v as object).every((x) => goAccepts(t.map, x));
  }
  switch (t) {
    case "string":
      return typeof v === "string";
    case "bool":
      return typeof v === "boolean";
    case "optbool":
      return v === null || typeof v === "boolean";
    case "int":
      return Number.isInteger(v);
    case "uint16":
      return Number.isInteger(v) && (v as number) >= 0 && (v as number) < 65536;
    case "float":
      return typeof v === "number";
    case "prefix": {
      const m = typeof v === "string" ? /^(.+)\/(\d+)$/.exec(v) : null;
      return Boolean(m && isIP(m[1]!) && Number(m[2]) <= (isIP(m[1]!) === 4 ? 32 : 128));
    }
    case "addrport": {
      const m = typeof v === "string" ? /^\[?([^\]]+?)\]?:(\d+)$/.exec(v) : null;
      return Boolean(m && isIP(m[1]!.split("%")[0]!) && Number(m[2]) < 65536);
    }
  }
}

function goDecodesStruct(spec: Record<string, GoType | Record<string, GoType>>, v: unknown, path: string): string[] {
  if (v === null || v === undefined) return [];
  if (typeof v !== "object" || Array.isArray(v)) return [`${path} is not an object`];
  return Object.entries(v as Record<string, unknown>).flatMap(([k, x]) => {
    const t = spec[k];
    if (t === undefined) return [];
    if (typeof t === "object" && !("list" in t) && !("map" in t)) return goDecodesStruct(t as Record<string, GoType>, x, `${path}.${k}`);
    return goAccepts(t as GoType, x) ? [] : [`${path}.${k} = ${JSON.stringify(x)}`];
  });
}

/** Every reason a Go client would fail to decode this node, or [] if it decodes. */
function goRejects(node: Record<string, unknown>): string[] {
  const bad: string[] = [];
  for (const [k, re] of [
    ["Key", KEY("nodekey")],
    ["Machine", KEY("mkey")],
    ["DiscoKey", KEY("discokey")],
  ] as const)
    if (node[k] !== undefined && !re.test(String(node[k]))) bad.push(`${k} = ${JSON.stringify(node[k])}`);
  if (!goAccepts({ list: "addrport" }, node.Endpoints)) bad.push(`Endpoints = ${JSON.stringify(node.Endpoints)}`);
  if (!goAccepts("int", node.Cap)) bad.push(`Cap = ${node.Cap}`);
  if (node.HomeDERP !== undefined && !goAccepts("int", node.HomeDERP)) bad.push(`HomeDERP = ${node.HomeDERP}`);
  return [...bad, ...goDecodesStruct(HOSTINFO as Record<string, GoType>, node.Hostinfo, "Hostinfo")];
}

const nodeKey = () => formatKey("nodekey", newKeyPair().publicKey);

describe("decoding what clients send", () => {
  it("accepts tailscaled 1.98's real register and map requests, keeping what peers need", () => {
    const r = decodeRegister(REAL_REGISTER);
    expect(r.version).toBe(138);
    expect(r.hostinfo.Hostname).toBe(REAL_REGISTER.Hostinfo.Hostname);
    const m = decodeMap(REAL_MAP);
    expect(m.endpoints?.length).toBeGreaterThan(0);
    expect(m.hostinfo?.NetInfo?.PreferredDERP).toBe(REAL_MAP.Hostinfo.NetInfo.PreferredDERP);
    expect(m.discoKey).toBe(REAL_MAP.DiscoKey);
    expect([m.stream, m.omitPeers, m.compress]).toEqual([false, true, true]);
    expect(decodeMap(REAL_MAP_STREAM).stream).toBe(true);
    // Everything tailscaled sent in Hostinfo is known and kept, in the same shape.
    expect(m.hostinfo).toEqual(REAL_MAP.Hostinfo);
  });

  it.each([
    ["DiscoKey", { DiscoKey: "discokey:not-hex" }],
    ["Endpoints[0]", { Endpoints: ["not-an-ip:port"] }],
    ["Endpoints[0]", { Endpoints: ["1.2.3.4:65536"] }],
    ["Version", { Version: 138.5 }],
    ["Version", { Version: "138" }],
    ["Hostinfo.NetInfo.PreferredDERP", { Hostinfo: { NetInfo: { PreferredDERP: "999" } } }],
    ["Hostinfo.NetInfo.WorkingUDP", { Hostinfo: { NetInfo: { WorkingUDP: "true" } } }],
    ["Hostinfo.RoutableIPs[0]", { Hostinfo: { RoutableIPs: ["10.0.0.0/99"] } }],
    ["Hostinfo.Hostname", { Hostinfo: { Hostname: "x".repeat(300) } }],
    ["Hostinfo", { Hostinfo: { sshHostKeys: Array(8).fill("k".repeat(1000)), RequestTags: Array(64).fill("t".repeat(128)) } }],
    ["Compress", { Compress: "gzip" }],
    ["Stream", { Stream: "yes" }],
  ])("refuses a map request with a bad %s, naming it", (field, change) => {
    expect(() => decodeMap({ ...REAL_MAP, ...change })).toThrow(RequestError);
    expect(() => decodeMap({ ...REAL_MAP, ...change })).toThrow(new RegExp(`^${field.replace(/[.[\]]/g, "\\$&")}: want`));
  });

  it("refuses register requests without a usable node key, or with a bad expiry or auth", () => {
    for (const change of [
      { NodeKey: `nodekey:${"0".repeat(64)}` },
      { NodeKey: "" },
      { NodeKey: formatKey("mkey", newKeyPair().publicKey) },
      { Expiry: "tomorrow" },
      { Auth: { AuthKey: 7 } },
      { Auth: "key" },
      { Followup: 1 },
    ])
      expect(() => decodeRegister({ ...REAL_REGISTER, ...change }), JSON.stringify(change)).toThrow(RequestError);
    // Negative control: the same request unchanged is accepted.
    expect(decodeRegister(REAL_REGISTER).nodeKey).toBe(REAL_REGISTER.NodeKey);
  });

  it("writes endpoints and prefixes in one canonical form", () => {
    expect(endpoint("[FE80::1%eth0]:00080", "e")).toBe("[fe80::1%eth0]:80");
    expect(endpoint("192.0.2.1:41641", "e")).toBe("192.0.2.1:41641");
    expect(() => endpoint("01.2.3.4:5", "e")).toThrow(RequestError); // Go's ParseAddr refuses leading zeros
    expect(() => endpoint("[1.2.3.4]:5", "e")).toThrow(RequestError);
    expect(prefix("FD7A::/48", "p")).toBe("fd7a::/48");
    expect(() => prefix("fe80::1%eth0/64", "p")).toThrow(RequestError);
  });

  it("drops unknown Hostinfo fields, so a peer only ever sees what we parsed", () => {
    const m = decodeMap({ ...REAL_MAP, Hostinfo: { ...REAL_MAP.Hostinfo, Evil: { "nested\u0000": [1, { x: 2 }] } } });
    expect(m.hostinfo).not.toHaveProperty("Evil");
  });
});

describe("mutated real requests (fuzz, bounded)", () => {
  it("only ever refuse with a RequestError, and whatever is accepted decodes on a Go peer", async () => {
    const rnd = prng(12);
    const t = new Tailnet(new StateStore(tmp()), {
      v4Prefix: "100.64.0.0/10",
      v6Prefix: "fd7a:115c:a1e0::/48",
      baseDomain: "tailnet.test",
    });
    const key = t.createPreAuthKey(t.createUser("fuzz").id, { reusable: true }).key;
    const deadline = Date.now() + 1_500;
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 400 && Date.now() < deadline; i++) {
      const nk = nodeKey();
      let rounds = 1 + Math.floor(rnd() * 3);
      let reg: unknown = { ...REAL_REGISTER, NodeKey: nk };
      let map: unknown = { ...REAL_MAP, NodeKey: nk };
      while (rounds--) [reg, map] = rnd() < 0.5 ? [mutate(reg, rnd), map] : [reg, mutate(map, rnd)];
      try {
        const r = decodeRegister(reg);
        const n = t.registerWithKey({
          machineKey: formatKey("mkey", newKeyPair().publicKey),
          nodeKey: r.nodeKey,
          authKey: key,
          hostinfo: r.hostinfo,
          cap: r.version,
        });
        const m = decodeMap({ ...(map as object), NodeKey: r.nodeKey });
        t.updateFromMapRequest(n, { discoKey: m.discoKey, endpoints: m.endpoints, hostinfo: m.hostinfo, cap: m.version });
        accepted++;
      } catch (e) {
        if (!(e instanceof RequestError)) throw e;
        refused++;
      }
    }
    const full = fullMapResponse(t, mapper, t.nodes()[0]!);
    for (const n of [full.Node, ...(full.Peers as unknown[])] as Record<string, unknown>[])
      expect(goRejects(n), `node ${n.ID}`).toEqual([]);
    // Negative control: the oracle does reject a node carrying a poisoned field.
    expect(goRejects({ ...(full.Node as object), DiscoKey: "discokey:not-hex", Cap: 138.5 })).toHaveLength(2);
    expect(accepted).toBeGreaterThan(20);
    expect(refused).toBeGreaterThan(20);
    await t.flush();
  });
});

describe("state written by an older server", () => {
  it("drops stored fields that do not decode on load, so a poison does not survive a restart", async () => {
    const dir = tmp();
    const t = new Tailnet(new StateStore(dir), { v4Prefix: "100.64.0.0/10", v6Prefix: "fd7a:115c:a1e0::/48", baseDomain: "tailnet.test" });
    const key = t.createPreAuthKey(t.createUser("u").id, {}).key;
    const n = t.registerWithKey({
      machineKey: formatKey("mkey", newKeyPair().publicKey),
      nodeKey: nodeKey(),
      authKey: key,
      hostinfo: { Hostname: "h" },
      cap: 138,
    });
    await t.flush();
    const poisoned = {
      ...n,
      discoKey: "discokey:not-hex",
      endpoints: ["not-an-ip:port"],
      cap: 138.5,
      hostinfo: { Hostname: "h", NetInfo: { PreferredDERP: "999" } },
    };
    writeFileSync(join(dir, "nodes", `${n.id}.json`), JSON.stringify(poisoned));
    const logs: string[] = [];
    const again = new Tailnet(new StateStore(dir), {
      v4Prefix: "100.64.0.0/10",
      v6Prefix: "fd7a:115c:a1e0::/48",
      baseDomain: "tailnet.test",
      log: (m) => logs.push(m),
    });
    const view = fullMapResponse(again, mapper, again.nodes()[0]!).Node as Record<string, unknown>;
    expect(goRejects(view)).toEqual([]);
    expect(logs.join("\n")).toMatch(/dropped a stored disco key/);
    expect(logs).toHaveLength(4);
  });
});
