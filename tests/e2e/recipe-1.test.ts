import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";

describe("recipe-1: the lighthouse", () => {
  let lab: LabHandle;

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-1", { lab: testLabName("r1") });
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("the roaming network cannot reach the home LAN directly (isolated bridges, NAT at home)", async () => {
    expect(await lab.succeeds("roaming", `ping -c1 -W1 ${lab.ip("home", "home")}`)).toBe(false);
    expect(await lab.succeeds("lighthouse", `ping -c1 -W1 ${lab.ip("home", "home")}`)).toBe(false);
  });

  it("before the peers are configured, roaming and home cannot reach each other over 172.16.100.0/24", async () => {
    expect(await lab.succeeds("roaming", "ping -c1 -W1 172.16.100.2")).toBe(false);
    expect(await lab.succeeds("home", "ping -c1 -W1 172.16.100.3")).toBe(false);
    expect((await lab.check("tcp")).ok).toBe(false);
  });

  it("after the solution, roaming and home ping each other through the lighthouse", async () => {
    await lab.solve();
    expect(await lab.succeeds("roaming", "ping -c1 -W2 172.16.100.2")).toBe(true);
    expect(await lab.succeeds("home", "ping -c1 -W2 172.16.100.3")).toBe(true);
    // Both tunnels end at the lighthouse: it has a handshake with each client.
    const hs = (await lab.sh("lighthouse", "wg show recipe-1 latest-handshakes")).stdout.trim().split("\n");
    expect(hs.filter((l) => Number(l.split(/\s+/)[1]) > 0)).toHaveLength(2);
  });

  it("a TCP connection with nc on port 8000 carries bytes from roaming to home", async () => {
    await lab.sh("home", "rm -f /tmp/nc.out; (timeout 10 nc -nlp 8000 > /tmp/nc.out 2>/dev/null &)");
    expect(await lab.succeeds("home", "for i in $(seq 50); do ss -ltn | grep -q ':8000 ' && exit 0; sleep 0.1; done; exit 1")).toBe(true);
    expect(await lab.succeeds("roaming", "echo bytes-over-the-lighthouse | nc -N -w 3 172.16.100.2 8000")).toBe(true);
    expect(
      await lab.succeeds("home", "for i in $(seq 50); do grep -q bytes-over-the-lighthouse /tmp/nc.out && exit 0; sleep 0.1; done; exit 1"),
    ).toBe(true);
    expect((await lab.checkAll()).filter((c) => !c.ok)).toEqual([]);
  });

  it("the home LAN is still unreachable from roaming except through the tunnel", async () => {
    expect(await lab.succeeds("roaming", `ping -c1 -W1 ${lab.ip("home", "home")}`)).toBe(false);
  });
});
