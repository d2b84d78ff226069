import { afterEach, describe, expect, it } from "vitest";
import { checkJson, mistakesShown, mustRun } from "../support/check-json.ts";
import { eventually } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";
import { startTs } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

let lab: LabHandle | undefined;
afterEach(async () => {
  await lab?.stop();
  lab = undefined;
});

describe("progressive and state-aware hints", () => {
  it("recipe-0: one more hint per failing check; [Peer] count per peer; up without peers; no handshake until the attendee pings", async () => {
    lab = await LabHandle.start("recipe-0", { lab: testLabName("hint0") });
    const l = lab;
    const peers = ["peer-1", "peer-2", "peer-3"];
    const conf = "/etc/wireguard/recipe-0.conf";

    // Progressive: the exercise being worked on shows one more hint per check, up to its last; the others stay at their first.
    const first = await checkJson(l);
    expect(first.configure!.hintsShown).toHaveLength(1);
    expect(first.configure!.hint).toContain("wg genkey | tee privatekey | wg pubkey > publickey");
    expect((await checkJson(l)).configure!.hintsShown).toHaveLength(2);
    const third = await checkJson(l);
    expect(third.configure!.hintsShown).toHaveLength(3);
    expect(third.mesh!.hintsShown).toHaveLength(1);
    expect((await checkJson(l)).configure!.hintsShown).toHaveLength(3);
    const hint = await startTs(["hint", "recipe-0", "mesh", "--lab", l.plan.lab]);
    expect(hint.stdout).toContain("hint 2/2:");
    expect(first.configure!.mistakes!.map((m) => m.hint)).toEqual(
      expect.arrayContaining(peers.map((p) => `${p}: 0 [Peer] section(s), expected 2 (one per other peer).`)),
    );

    // One peer a [Peer] short: only that peer is named (control: none after the reference configs).
    await l.solve("configure");
    expect(await mistakesShown(l, "configure")).toEqual([]);
    await mustRun(l, "peer-3", `awk '/^\\[Peer\\]/ { n++ } n < 2' ${conf} > /tmp/c && cat /tmp/c > ${conf}`);
    expect(await mistakesShown(l, "configure")).toEqual(["peer-3: 1 [Peer] section(s), expected 2 (one per other peer)."]);
    await l.solve("configure");

    // Up without peers: peer-1 brought up from a config whose [Peer] sections were not there yet.
    await mustRun(l, "peer-1", `cp ${conf} /tmp/full && sed -i '/^\\[Peer\\]/,$d' ${conf} && wg-quick up recipe-0 && cp /tmp/full ${conf}`);
    for (const p of ["peer-2", "peer-3"]) await mustRun(l, p, "wg-quick up recipe-0");
    const mesh = await mistakesShown(l, "mesh");
    expect(mesh).toContain(
      "peer-1: recipe-0 is up but has no peers: add the [Peer] sections, then `wg-quick down recipe-0 && wg-quick up recipe-0`.",
    );
    expect(mesh.filter((h) => h.startsWith("peer-2: recipe-0 is up but has no peers"))).toEqual([]);
    await mustRun(l, "peer-1", "wg-quick down recipe-0 && wg-quick up recipe-0");

    // Evidence, not probes: right after up, nobody has pinged, so mesh does not pass and the check made no handshake itself.
    const before = await checkJson(l, "up", "mesh");
    expect(before.up!.state).toBe("pass");
    expect(before.mesh!.state).toBe("not yet");
    expect(before.mesh!.mistakes!.map((m) => m.node).sort()).toEqual(peers);
    expect(before.mesh!.mistakes![0]!.hint).toMatch(/no handshake yet with the peer at \S+:51820 \S+:51820/);
    for (const p of peers)
      expect(
        (await mustRun(l, p, "wg show recipe-0 latest-handshakes"))
          .trim()
          .split("\n")
          .every((x) => x.endsWith("\t0")),
      ).toBe(true);
    await mustRun(l, "peer-1", "ping -c1 -W2 172.16.100.2 && ping -c1 -W2 172.16.100.3");
    await mustRun(l, "peer-2", "ping -c1 -W2 172.16.100.3");
    expect((await checkJson(l, "mesh")).mesh!.state).toBe("pass");
  });

  it("recipe-1: missing [Peer]s by node; the Endpoint port; AllowedIPs too narrow; no keepalive behind the NAT", async () => {
    lab = await LabHandle.start("recipe-1", { lab: testLabName("hint1") });
    const l = lab;
    expect(await mistakesShown(l, "peers")).toEqual([
      "lighthouse: 0 [Peer] section(s), expected 2: one for home, one for roaming, each with only that client's /32.",
      "home: no [Peer] section yet: add the lighthouse's (the guide shows it).",
      "roaming: no [Peer] section yet: add the lighthouse's (the guide shows it).",
    ]);
    await l.solve("peers");
    expect(await mistakesShown(l, "peers")).toEqual([]);

    // A wrong Endpoint port on roaming: no handshake there, and the hint names it (home, right, is not named).
    await mustRun(l, "roaming", "sed -i 's/:51820$/:51821/' /etc/wireguard/recipe-1.conf");
    await l.solve("up");
    const port = await eventually("only roaming without a handshake", async () => {
      const s = await mistakesShown(l, "ping");
      return s.length === 1 ? s : undefined;
    });
    expect(port[0]).toMatch(/^roaming: no handshake with the lighthouse: check the Endpoint port \(\S+:51820\)/);
    await l.solve("peers");
    await mustRun(l, "roaming", "wg-quick down recipe-1 && wg-quick up recipe-1");
    await eventually("ping passes once the port is right", async () => (await checkJson(l, "ping")).ping!.state === "pass", {
      timeout: TIMEOUT.converge,
    });
    expect(await mistakesShown(l, "ping")).toEqual([]);

    // AllowedIPs of home's [Peer] narrowed to the lighthouse's /32: roaming's pings die at home.
    const lh = (await mustRun(l, "home", "wg show recipe-1 peers")).trim();
    await mustRun(l, "home", `wg set recipe-1 peer ${lh} allowed-ips 172.16.100.1/32`);
    const narrow = await checkJson(l, "ping");
    expect(narrow.ping!.state).toBe("not yet");
    expect(narrow.ping!.mistakes!.map((m) => m.hint)).toEqual([
      expect.stringMatching(/^home: AllowedIPs = 172\.16\.100\.1\/32 sends only/),
    ]);
    await mustRun(l, "home", `wg set recipe-1 peer ${lh} allowed-ips 172.16.100.0/24`);

    // No keepalive on home: after a reload of all three, nothing from home tells the lighthouse where it is.
    expect((await mistakesShown(l, "ping")).filter((h) => h.includes("PersistentKeepalive"))).toEqual([]);
    for (const n of ["lighthouse", "home", "roaming"]) await mustRun(l, n, "wg-quick down recipe-1");
    await mustRun(l, "home", "sed -i '/^PersistentKeepalive/d' /etc/wireguard/recipe-1.conf");
    for (const n of ["lighthouse", "home", "roaming"]) await mustRun(l, n, "wg-quick up recipe-1");
    const quiet = await checkJson(l, "ping");
    expect(quiet.ping!.state).toBe("not yet");
    expect(quiet.ping!.mistakes!.map((m) => m.hint)).toContainEqual(expect.stringMatching(/^home: no PersistentKeepalive/));
  });

  it("recipe-2: interfaces down by node; the home router down; its masquerade gone; the capture still running, empty or elsewhere", async () => {
    lab = await LabHandle.start("recipe-2", { lab: testLabName("hint2") });
    const l = lab;
    expect(await mistakesShown(l, "up")).toEqual(
      ["lighthouse", "home-router", "roaming"].map((n) => `${n}: no interface recipe-2 yet: run \`wg-quick up recipe-2\` there.`),
    );
    for (const n of ["lighthouse", "roaming"]) await mustRun(l, n, "wg-quick up recipe-2");
    const down = await checkJson(l, "tracepath");
    expect(down.tracepath!.state).toBe("not yet");
    expect(down.tracepath!.mistakes!.map((m) => m.hint)).toEqual([expect.stringMatching(/^home-router: recipe-2 is down/)]);
    await mustRun(l, "home-router", "wg-quick up recipe-2");
    await eventually("curl passes", async () => (await checkJson(l, "curl")).curl!.state === "pass", { timeout: TIMEOUT.converge });
    expect(await mistakesShown(l, "curl")).toEqual([]);

    // The masquerade table gone: the webserver's answers have no way back; the hint's remedy brings them back.
    await mustRun(l, "home-router", "nft delete table inet recipe2");
    const masq = await checkJson(l, "curl");
    expect(masq.curl!.state).toBe("not yet");
    expect(masq.curl!.mistakes!.map((m) => m.hint)).toEqual([expect.stringMatching(/^home-router: the nftables table inet recipe2/)]);
    await mustRun(l, "home-router", "wg-quick down recipe-2; wg-quick up recipe-2");
    await eventually("curl passes after the reload", async () => (await checkJson(l, "curl")).curl!.state === "pass", {
      timeout: TIMEOUT.converge,
    });

    // The capture: elsewhere, then still running, then empty.
    expect(await mistakesShown(l, "dirty-secret")).toEqual([]);
    await mustRun(l, "lighthouse", "timeout -s INT 1 tcpdump -i recipe-2 -w /tmp/mine.pcapng tcp port 80 || true");
    expect(await mistakesShown(l, "dirty-secret")).toEqual([
      "lighthouse: the check reads /root/curl.pcapng, but the capture is elsewhere (/tmp/mine.pcapng): run tcpdump in /root.",
    ]);
    await mustRun(l, "lighthouse", "cd /root && (timeout 60 tcpdump -i recipe-2 -w curl.pcapng tcp port 80 >/dev/null 2>&1 &)");
    await eventually("tcpdump runs", async () => (await l.sh("lighthouse", "pgrep -x tcpdump")).exitCode === 0);
    expect(await mistakesShown(l, "dirty-secret")).toContain(
      "lighthouse: tcpdump is still running: press Ctrl-C in its pane so it writes the capture out.",
    );
    await mustRun(l, "lighthouse", "pkill -INT -x tcpdump; while pgrep -x tcpdump >/dev/null; do sleep 0.1; done");
    expect(await mistakesShown(l, "dirty-secret")).toEqual([
      expect.stringMatching(/^lighthouse: \/root\/curl\.pcapng holds no request with the key/),
    ]);
  });
});
