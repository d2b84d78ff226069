import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TailscaleInContainer } from "../../src/nodes/tailscale.ts";
import type { ControlServer } from "../support/control-server.ts";
import { eventually } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";
import { TIMEOUT } from "../support/timeouts.ts";
import { ALL, CONTROLS, recoveryTime, report } from "./lib.ts";

/**
 * Restart drills on recipe-3, per control server (WG3_CONTROLS, default "headscale"): restart
 * the control server, restart a client, cut the home client's link for 10 s. Each first shows
 * the fault took effect (negative control), then times the recovery and checks the mesh
 * again: nodes online, the route to the home LAN works, every node kept its IPs.
 */
describe.runIf(ALL).each(CONTROLS)("recipe-3 restart drills with --control %s", (control) => {
  let lab: LabHandle;
  let cs: ControlServer;
  let home: TailscaleInContainer;
  let roaming: TailscaleInContainer;
  let web: string;
  let ipsBefore: Record<string, string[]>;

  const onlineNames = async () =>
    (await cs.nodes())
      .filter((n) => n.online)
      .map((n) => n.given_name)
      .sort();
  const ipsByName = async () => Object.fromEntries((await cs.nodes()).map((n) => [n.given_name, [...n.ip_addresses].sort()]));
  // 1 s: a probe that starts just before the route is back must not hold the clock for 5 s.
  const routeWorks = async () => (await roaming.curl(`http://${web}/`, 1)).stdout.includes("Hello from Caddy!");
  const meshHealthy = async () => JSON.stringify(await onlineNames()) === JSON.stringify(["home", "roaming"]) && (await routeWorks());

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-3", { lab: testLabName(`restart-${control}`), options: { control } });
    cs = lab.controlServer();
    home = lab.tailscale("ts-client-home");
    roaming = lab.tailscale("ts-client-roaming");
    web = lab.ip("webserver", "home");
    await eventually("the mesh healthy before the drills", meshHealthy, { timeout: TIMEOUT.converge });
    ipsBefore = await ipsByName();
    expect(Object.keys(ipsBefore).sort()).toEqual(["home", "roaming"]);
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("restart the control server: the data plane keeps working while it is down, then both clients come back with the same IPs", async () => {
    const hs = lab.container("headscale");
    await lab.engine.stop(hs);
    // Negative control: the control server is really gone for the clients.
    expect(await lab.engine.containerState(lab.container("headscale"))).toBe("exited");
    expect((await roaming.sh(`curl -sk --max-time 3 -o /dev/null https://${lab.ip("headscale", "roaming")}/health`)).exitCode).not.toBe(0);
    // The lesson of recipe 3: the coordination server is not in the data path.
    const downWhileOff = await routeWorks();
    const t0 = performance.now();
    await lab.engine.start(hs);
    const s = await recoveryTime(`${control} restart: both nodes online and the route working`, meshHealthy);
    expect(await ipsByName()).toEqual(ipsBefore);
    expect(await roaming.ip()).toBe(ipsBefore.roaming!.find((ip) => ip.includes("."))!);
    report(
      `${control}: control server restart -> mesh healthy ${s.toFixed(1)} s after start (${((performance.now() - t0) / 1000).toFixed(1)} s incl. checks); ` +
        `route ${downWhileOff ? "KEPT working" : "did not work"} while the control server was down; IPs unchanged`,
    );
    expect(downWhileOff).toBe(true);
  });

  it("restart the roaming client: it goes offline, then comes back online with the same IPs", async () => {
    const client = lab.container("ts-client-roaming");
    await lab.engine.stop(client);
    // Negative control: the control server notices it is gone.
    await eventually("roaming offline in the control server", async () => !(await onlineNames()).includes("roaming"), {
      timeout: TIMEOUT.converge,
    });
    expect(await routeWorks().catch(() => false)).toBe(false);
    const t0 = performance.now();
    await lab.engine.start(client);
    const s = await recoveryTime(`${control}: roaming back online and the route working`, async () => {
      const st = await roaming.status();
      return st.BackendState === "Running" && (await meshHealthy());
    });
    expect(await ipsByName()).toEqual(ipsBefore);
    report(
      `${control}: client restart -> online with route ${s.toFixed(1)} s after start (${((performance.now() - t0) / 1000).toFixed(1)} s incl. checks); IPs unchanged`,
    );
  });

  it("cut the home client's link for 10 s: the mesh breaks, then heals", async () => {
    // tc netem where the kernel has it (sch_netem); otherwise drop everything on eth0 with nftables.
    const tc = await home.sh("tc qdisc add dev eth0 root netem loss 100%");
    const how = tc.exitCode === 0 ? "tc netem loss 100%" : "nftables drop on eth0 (this kernel has no netem)";
    if (tc.exitCode !== 0) {
      expect(tc.stderr).toMatch(/qdisc kind is unknown|No such file/);
      const nft = await home.sh(
        "nft add table inet wg3cut && " +
          "nft add chain inet wg3cut pre '{ type filter hook prerouting priority -400; }' && nft add rule inet wg3cut pre iifname eth0 drop && " +
          "nft add chain inet wg3cut post '{ type filter hook postrouting priority 400; }' && nft add rule inet wg3cut post oifname eth0 drop",
      );
      expect(nft.exitCode, nft.stderr).toBe(0);
    }
    const cutAt = performance.now();
    let restored = false;
    const restore = async () => {
      if (restored) return;
      restored = true;
      if (tc.exitCode === 0) expect((await home.sh("tc qdisc del dev eth0 root")).exitCode).toBe(0);
      else expect((await home.sh("nft delete table inet wg3cut")).exitCode).toBe(0);
    };
    try {
      // Negative control: the route through home is really broken while the link is cut.
      await eventually("the route through home broken by the cut", async () => !(await routeWorks()), { timeout: TIMEOUT.short });
      // Keep the link cut for 10 s in all, checking all along that it stays broken.
      let probes = 0;
      while (performance.now() - cutAt < 10_000) {
        expect(await routeWorks()).toBe(false);
        probes++;
      }
      await restore();
      const s = await recoveryTime(
        `${control}: mesh healed after the cut`,
        async () => (await meshHealthy()) && (await roaming.tsPing("home")).ok,
      );
      expect(await ipsByName()).toEqual(ipsBefore);
      report(
        `${control}: 10 s link cut on home (${how}, ${probes} failing probes during the cut) -> mesh healed ${s.toFixed(1)} s after restore`,
      );
    } finally {
      await restore();
    }
  });
});
