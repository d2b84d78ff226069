import { describe, expect, it } from "vitest";
import {
  ALLOW_ALL,
  canOwnTag,
  compileAll,
  filterAllows,
  ipIn,
  nodeFilter,
  PolicyError,
  type PolicyNode,
  parsePolicy,
  runTests,
  standardize,
} from "../../src/control/policy.ts";

// The recipe-5 tailnet: alice (admin) with two devices, bob, a tagged server.
const N = (id: number, user: string, tags: string[] = []): PolicyNode => ({
  id,
  ips: [`100.64.0.${id}`, `fd7a:115c:a1e0::${id}`],
  user,
  tags,
});
const server = N(1, "alice", ["tag:server"]);
const alice = N(2, "alice");
const bob = N(3, "bob");
const alice2 = N(4, "alice");
const nodes = [server, alice, bob, alice2];

const REFERENCE = `{
  // admins may reach everything on the server; members only the web
  "groups": { "group:admin": ["alice@"], },
  "tagOwners": { "tag:server": ["group:admin"] },
  "hosts": { "lan": "192.168.5.0/24" },
  "acls": [
    { "action": "accept", "src": ["autogroup:member"], "dst": ["tag:server:80"] },
    { "action": "accept", "src": ["group:admin"], "dst": ["tag:server:22,2000-2010"] },
    /* own devices */
    { "action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"] },
  ],
  "tests": [
    { "src": "bob@", "accept": ["tag:server:80"], "deny": ["tag:server:22", "alice@:80"] },
    { "src": "alice@", "accept": ["tag:server:22", "tag:server:80"] },
    { "src": "tag:server", "deny": ["alice@:22", "bob@:80"] },
  ],
}`;

const ip = (n: PolicyNode) => n.ips[0]!;
const name = (n: PolicyNode) => ["", "server", "alice", "bob", "alice2"][n.id]!;

describe("HuJSON", () => {
  it("blanks comments and trailing commas but keeps every position", () => {
    const text = '{ "a": [1, 2, ], // c\n /* x */ "b": "//not a comment", }';
    const s = standardize(text);
    expect(s.length).toBe(text.length);
    expect(JSON.parse(s)).toEqual({ a: [1, 2], b: "//not a comment" });
  });
});

describe("parsePolicy refuses bad policies with one sentence and the line", () => {
  const base = (acl: string, extra = "") =>
    `{\n"groups": {"group:admin": ["alice@"]},\n"tagOwners": {"tag:server": ["group:admin"]},${extra}\n"acls": [${acl}]\n}`;
  it.each([
    ["a syntax error", '{\n"acls": [\n{ "action": "accept" "src": [] }\n]}', /^line 3: HuJSON syntax error/],
    ["an unknown group", base('{"action":"accept","src":["group:ops"],"dst":["*:*"]}'), /^line 4: group:ops is not defined in groups/],
    ["an undefined tag", base('{"action":"accept","src":["*"],"dst":["tag:db:5432"]}'), /^line 4: tag:db has no entry in tagOwners/],
    ["a port out of range", base('{"action":"accept","src":["*"],"dst":["tag:server:70000"]}'), /port 70000 is out of range \(0-65535\)/],
    ["a backwards range", base('{"action":"accept","src":["*"],"dst":["*:90-80"]}'), /port range 90-80 ends before it starts/],
    ["a destination without ports", base('{"action":"accept","src":["*"],"dst":["tag:server"]}'), /needs :ports/],
    ["a user without @", base('{"action":"accept","src":["bob"],"dst":["*:*"]}'), /"bob" is not a user \(write users as name@\)/],
    ["autogroup:self as a source", base('{"action":"accept","src":["autogroup:self"],"dst":["*:*"]}'), /valid only as a destination/],
    ["a deny action", base('{"action":"deny","src":["*"],"dst":["*:*"]}'), /action must be "accept"/],
    ["an unknown field", '{"acl": []}', /unknown field "acl"/],
    ["a tag owned by an unknown group", '{"tagOwners": {"tag:x": ["group:nobody"]}}', /group:nobody is not defined in groups/],
    ["an empty test", base("", '\n"tests": [{"src": "bob@"}],'), /must have at least one of "accept" or "deny"/],
    ["an unknown proto", base('{"action":"accept","proto":"tpc","src":["*"],"dst":["*:*"]}'), /proto "tpc" is not a protocol/],
  ])("%s", (_what, text, why) => {
    expect(() => parsePolicy(text)).toThrow(PolicyError);
    expect(() => parsePolicy(text)).toThrow(why);
  });
});

describe("compiling the reference policy", () => {
  const p = parsePolicy(REFERENCE);
  const all = compileAll(p, nodes);

  it("gives the server a filter with users on 80 and admins on 22 and 2000-2010 (IPProto omitted: tailcfg's default)", () => {
    const f = all.get(server.id)!.filter;
    expect(f).toEqual([
      {
        SrcIPs: [...alice.ips, ...bob.ips, ...alice2.ips],
        DstPorts: server.ips.map((IP) => ({ IP, Ports: { First: 80, Last: 80 } })),
      },
      {
        SrcIPs: [...alice.ips, ...alice2.ips],
        DstPorts: server.ips.flatMap((IP) => [
          { IP, Ports: { First: 22, Last: 22 } },
          { IP, Ports: { First: 2000, Last: 2010 } },
        ]),
      },
    ]);
  });

  it("autogroup:self: alice's devices accept each other, not bob; tagged nodes get no self rule", () => {
    const f = all.get(alice.id)!.filter;
    expect(f).toEqual([
      { SrcIPs: [...alice.ips, ...alice2.ips], DstPorts: alice.ips.map((IP) => ({ IP, Ports: { First: 0, Last: 65535 } })) },
    ]);
    expect(all.get(bob.id)!.filter).toEqual([
      { SrcIPs: bob.ips, DstPorts: bob.ips.map((IP) => ({ IP, Ports: { First: 0, Last: 65535 } })) },
    ]);
  });

  // [from, to, port, allowed]
  it.each(
    (
      [
        [alice, server, 80, true],
        [alice, server, 22, true],
        [alice, server, 2005, true],
        [alice, server, 443, false],
        [bob, server, 80, true],
        [bob, server, 22, false],
        [server, alice, 80, false],
        [server, bob, 22, false],
        [bob, alice, 80, false],
        [alice2, alice, 5432, true],
        [alice, bob, 22, false],
      ] as [PolicyNode, PolicyNode, number, boolean][]
    ).map(([f, t, port, ok]) => [name(f), name(t), port, ok, f, t] as const),
  )("%s -> %s:%i allowed=%s", (_f, _t, port, allowed, from, to) => {
    expect(filterAllows(all.get(to.id)!.filter, ip(from), ip(to), port)).toBe(allowed);
  });

  // Peers: a node knows those it may reach or that may reach it.
  it.each(
    (
      [
        [server, [alice, bob, alice2]],
        [alice, [server, alice2]],
        [bob, [server]],
      ] as [PolicyNode, PolicyNode[]][]
    ).map(([n, peers]) => [name(n), peers.map(name).join(", "), n, peers] as const),
  )("node %s sees %s", (_n, _p, n, peers) => {
    expect([...all.get(n.id)!.peers].sort()).toEqual(peers.map((x) => x.id).sort());
  });

  it("its tests block passes", () => {
    expect(() => runTests(p, nodes)).not.toThrow();
  });
});

describe("other aliases", () => {
  it.each([
    ['"*"', "*:*", bob, alice, 9, true],
    ["a CIDR", "100.64.0.0/24:443", bob, alice, 443, true],
    ["a host", "lan:22", bob, alice, 22, false],
    ["a user's IP", "100.64.0.2:22", bob, alice, 22, true],
    ["autogroup:tagged", "autogroup:tagged:*", bob, server, 1, true],
    ["autogroup:member to a user", "alice@:22", bob, alice, 22, true],
  ])("%s", (_what, dst, from, to, port, allowed) => {
    const p = parsePolicy(
      `{"hosts": {"lan": "192.168.5.0/24"}, "tagOwners": {"tag:server": []}, "acls": [{"action": "accept", "src": ["autogroup:member"], "dst": [${JSON.stringify(dst)}]}]}`,
    );
    expect(filterAllows(nodeFilter(p, to, nodes), ip(from), ip(to), port)).toBe(allowed);
  });

  it("a proto restricts the rule to it", () => {
    const p = parsePolicy('{"acls": [{"action": "accept", "proto": "udp", "src": ["*"], "dst": ["*:53"]}]}');
    const f = nodeFilter(p, alice, nodes);
    expect(f[0]!.IPProto).toEqual([17]);
    expect(filterAllows(f, ip(bob), ip(alice), 53, 17)).toBe(true);
    expect(filterAllows(f, ip(bob), ip(alice), 53, 6)).toBe(false);
  });

  it("no policy is allow-all, and every node sees every other", () => {
    const all = compileAll(undefined, nodes);
    expect(all.get(bob.id)!.filter).toBe(ALLOW_ALL);
    expect(all.get(bob.id)!.peers.size).toBe(3);
    // A view of the others, not a copy per node: it lists every other node and never bob.
    expect(all.get(bob.id)!.peers.has(bob.id)).toBe(false);
    expect([...all.get(bob.id)!.peers].sort()).toEqual(
      nodes
        .map((n) => n.id)
        .filter((id) => id !== bob.id)
        .sort(),
    );
  });
});

describe("the tests block", () => {
  it("refuses a policy whose assertions fail, naming each failure in one sentence", () => {
    const p = parsePolicy(REFERENCE.replace('"src": ["group:admin"]', '"src": ["autogroup:member"]'));
    expect(() => runTests(p, nodes)).toThrow("the policy's tests failed: bob@ -> tag:server:22: expected DENIED, got ALLOWED");
  });
  it("an accept that fails is named too", () => {
    const p = parsePolicy(REFERENCE.replace('"dst": ["tag:server:80"]', '"dst": ["tag:server:8080"]'));
    expect(() => runTests(p, nodes)).toThrow(/bob@ -> tag:server:80: expected ALLOWED, got DENIED/);
  });
});

describe("the tests block with other destinations", () => {
  it.each([
    // A CIDR is refused as a test destination, as Headscale 0.29 does (control-exit-ha.test.ts).
    ["an IP destination", '"deny": ["100.64.0.1:22"]', true],
    ["a host destination", '"accept": ["srv:80"]', true],
    ["a destination that resolves to nothing", '"accept": ["tag:idle:80"]', false],
  ])("%s", (_what, assertion, passes) => {
    const p = parsePolicy(
      `{"hosts": {"srv": "100.64.0.1"}, "tagOwners": {"tag:server": [], "tag:idle": []}, "acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["tag:server:80"]}], "tests": [{"src": "bob@", ${assertion}}]}`,
    );
    if (passes) expect(() => runTests(p, nodes)).not.toThrow();
    else expect(() => runTests(p, nodes)).toThrow(/tag:idle:80: the destination resolved to no addresses/);
  });
});

describe("tagOwners", () => {
  const p = parsePolicy(REFERENCE);
  it.each([
    ["alice", "tag:server", true],
    ["bob", "tag:server", false],
    ["alice", "tag:other", false],
  ])("%s may own %s: %s", (user, tag, ok) => {
    expect(canOwnTag(p, tag, user)).toBe(ok);
  });
});

describe("ipIn", () => {
  it.each([
    ["100.64.0.2", ["100.64.0.0/24"], true],
    ["100.64.1.2", ["100.64.0.0/24"], false],
    ["fd7a:115c:a1e0::2", ["fd7a:115c:a1e0::/48"], true],
    ["fd7a:115c:a1e0::2", ["100.64.0.0/10"], false],
    ["10.0.0.1", ["*"], true],
  ])("%s in %o: %s", (a, set, ok) => {
    expect(ipIn(a, set)).toBe(ok);
  });
});

describe("users from an OIDC login", () => {
  // carol logged in through the identity provider: user name carol, email carol@example.com.
  const carol: PolicyNode = { ...N(5, "carol"), email: "carol@example.com" };
  const all = [...nodes, carol];
  const policy = (member: string) =>
    parsePolicy(`{
      "groups": { "group:admin": ["alice@", "${member}"] },
      "tagOwners": { "tag:server": ["group:admin"] },
      "acls": [ { "action": "accept", "src": ["group:admin"], "dst": ["tag:server:22"] } ],
    }`);

  it("are named by the email the IdP gave (as Headscale), or by user name; a user without that email is not", () => {
    for (const member of ["carol@example.com", "carol@"])
      expect(filterAllows(nodeFilter(policy(member), server, all), ip(carol), ip(server), 22), member).toBe(true);
    // Negative control: bob has no email, so bob@example.com names nobody.
    expect(filterAllows(nodeFilter(policy("bob@example.com"), server, all), ip(bob), ip(server), 22)).toBe(false);
    expect(filterAllows(nodeFilter(policy("dave@example.com"), server, all), ip(carol), ip(server), 22)).toBe(false);
  });
});
