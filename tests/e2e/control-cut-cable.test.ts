import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TailscaleInContainer } from "../../src/nodes/tailscale.ts";
import type { ControlServer } from "../support/control-server.ts";
import { eventually, timeUntil } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { TIMEOUT } from "../support/timeouts.ts";

/**
 * Liveness in the real lab: recipe-3 with --control builtin, the home client's cable
 * cut (every packet on its eth0 dropped; nothing closes its TCP connection to the control
 * server). The server's HTTP/2 PINGs go unanswered, so it marks home offline within
 * ping_interval + ping_timeout (10 s + 5 s by default); before, a cut cable left it "online"
 * until TCP gave up, minutes later. Restoring the cable brings home back online.
 */
describe("recipe-3 --control builtin: a cut cable marks the node offline within seconds", () => {
  let lab: LabHandle;
  let cs: ControlServer;
  let home: TailscaleInContainer;
  const online = async (name: string) => (await cs.nodes()).some((n) => n.given_name === name && n.online);

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-3", { lab: `t12-cut-${randomBytes(2).toString("hex")}`, options: { control: "builtin" } });
    cs = lab.controlServer();
    home = lab.tailscale("ts-client-home");
    await eventually("home and roaming online", async () => (await online("home")) && (await online("roaming")), {
      timeout: TIMEOUT.converge,
    });
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("home goes offline within 16 s of its cable being cut, and comes back once it is restored", async () => {
    // Negative control: home is online before the cut (the integration test shows it stays so without PINGs).
    expect(await online("home")).toBe(true);
    const cut = await home.sh(
      "nft add table inet t12cut && " +
        "nft add chain inet t12cut pre '{ type filter hook prerouting priority -400; }' && nft add rule inet t12cut pre iifname eth0 drop && " +
        "nft add chain inet t12cut post '{ type filter hook postrouting priority 400; }' && nft add rule inet t12cut post oifname eth0 drop",
    );
    expect(cut.exitCode, cut.stderr).toBe(0);
    try {
      const s = await timeUntil("home offline in the control server", async () => !(await online("home")), { timeout: TIMEOUT.converge });
      process.stdout.write(`builtin control server: home offline ${s.toFixed(1)} s after its cable was cut\n`);
      expect(s).toBeLessThan(16);
      expect(await online("roaming")).toBe(true); // only the cut node
    } finally {
      expect((await home.sh("nft delete table inet t12cut")).exitCode).toBe(0);
    }
    const back = await timeUntil("home online again", () => online("home"), { timeout: TIMEOUT.recovery });
    process.stdout.write(`home online again ${back.toFixed(1)} s after the cable was restored\n`);
  });
});
