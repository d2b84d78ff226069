import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";
import { TIMEOUT } from "../support/timeouts.ts";

// Recipe-5's coordinator exercise (seed 003: "the server's WireGuard public key"), against
// Headscale and the builtin control server.
const controls = (process.env.WG3_CONTROLS ?? "headscale,builtin").split(",");

describe.each(controls)("recipe-5 with --control %s: the coordinator and its keys", (control) => {
  let lab: LabHandle;
  const labName = testLabName(`r5k-${control.slice(0, 2)}`);
  const coordinator = () => lab.ip("headscale", "internet");
  const wireguardFilter = () => lab.plan.vars.wireguardFilter!;

  /** Count the packets of a pcap file in `node` that match a tcpdump filter (0 when unreadable). */
  const countPackets = async (node: string, file: string, filter: string) =>
    Number((await lab.sh(node, `tcpdump -nr ${file} '${filter}' 2>/dev/null | wc -l`)).stdout.trim());

  /** A capture on `node`'s eth0 into `file` while alice opens 5 connections to the server's web through the tailnet. */
  const captureDuringTraffic = async (node: string, file: string) => {
    const log = `${file}.log`;
    expect((await lab.sh(node, `rm -f ${file}; (setsid timeout 6 tcpdump -ni eth0 -w ${file} >${log} 2>&1 &)`)).exitCode).toBe(0);
    await eventually(`tcpdump listening on ${node}`, () => lab.succeeds(node, `grep -q listening ${log}`));
    const traffic = await lab.sh("ts-alice", "S=$(tailscale ip -4 server) && for i in 1 2 3 4 5; do nc -z -w 2 $S 80 || exit 1; done");
    expect(traffic.exitCode, traffic.stderr).toBe(0);
    await eventually(`the capture on ${node} written`, () => lab.succeeds(node, "! pgrep -x tcpdump >/dev/null"), {
      timeout: TIMEOUT.capture,
    });
  };

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-5", { lab: labName, options: { control } });
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("coordinator: before anything is written or captured the check fails (negative control)", async () => {
    expect((await lab.check("coordinator")).ok).toBe(false);
  });

  it("coordinator: its only public key is the Noise machine key, which is no peer's WireGuard key", async () => {
    const served = (await lab.sh("ts-alice", `curl -s "https://${coordinator()}/key?v=130"`)).stdout;
    const mkey = /"publicKey":"(mkey:[0-9a-f]{64})"/.exec(served)?.[1];
    expect(mkey, served).toBeDefined();
    const status = JSON.parse((await lab.sh("ts-alice", "tailscale status --json")).stdout) as {
      Self: { PublicKey: string };
      Peer: Record<string, { PublicKey: string; HostName: string }>;
    };
    const peers = Object.values(status.Peer);
    console.log(`[${control}] coordinator ${mkey}; alice's WireGuard peers: ${peers.map((p) => p.HostName).join(", ")}`);
    // Alice's WireGuard peers are the other clients, each with a node key; the coordinator is none of them.
    expect(peers.length).toBeGreaterThan(0);
    expect(peers.every((p) => p.PublicKey.startsWith("nodekey:"))).toBe(true);
    expect(peers.some((p) => p.PublicKey.slice("nodekey:".length) === mkey!.slice("mkey:".length))).toBe(false);
    // A node key written as the answer is refused: the check wants the coordinator's own key.
    const serverPeer = peers.find((p) => p.HostName === "server")!;
    await lab.sh("ts-alice", `echo ${serverPeer.PublicKey} > /root/coordinator-key.txt`);
    const wrong = await lab.check("coordinator");
    expect(wrong.ok).toBe(false);
  });

  it("coordinator: the same WireGuard filter finds the tunnel on alice's wire and nothing on the coordinator's; solve passes the check", async () => {
    // Negative control: the filter is not blind. On alice's interface, traffic to the server is WireGuard.
    await captureDuringTraffic("ts-alice", "/root/alice.pcap");
    const onAlice = await countPackets("ts-alice", "/root/alice.pcap", wireguardFilter());
    await lab.solve("coordinator");
    const onCoordinator = await countPackets("headscale", "/root/coordinator.pcap", wireguardFilter());
    const control443 = await countPackets("headscale", "/root/coordinator.pcap", `tcp port 443 and not src host ${coordinator()}`);
    console.log(
      `[${control}] WireGuard packets while alice reached the server: ${onAlice} on alice's eth0, ${onCoordinator} on the coordinator's; ${control443} TCP/443 packets from clients at the coordinator`,
    );
    expect(onAlice).toBeGreaterThan(0);
    expect(onCoordinator).toBe(0);
    expect(control443).toBeGreaterThan(0);
    expect((await lab.check("coordinator")).ok).toBe(true);
  });

  it("coordinator: a capture that holds WireGuard data (alice's, put in the coordinator's place) fails the check", async () => {
    const pcap = (await lab.sh("ts-alice", "base64 -w0 /root/alice.pcap")).stdout.trim();
    expect(pcap.length).toBeGreaterThan(0);
    expect((await lab.sh("headscale", `echo '${pcap}' | base64 -d > /root/coordinator.pcap`)).exitCode).toBe(0);
    expect((await lab.check("coordinator")).ok).toBe(false);
    await lab.solve("coordinator");
    expect((await lab.check("coordinator")).ok).toBe(true);
  });
});
