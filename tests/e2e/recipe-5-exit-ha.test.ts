import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mistakesShown } from "../support/check-json.ts";
import type { ControlServer } from "../support/control-server.ts";
import { eventually, timeUntil } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";
import { TIMEOUT } from "../support/timeouts.ts";

// Recipe-5's exit node and HA subnet routers, against Headscale and the builtin control server.
const controls = (process.env.WG3_CONTROLS ?? "headscale,builtin").split(",");
const ECHO = "198.51.100.80"; // recipe-5's vars.echoIp

describe.each(controls)("recipe-5 with --control %s: exit node and HA subnet routers", (control) => {
  let lab: LabHandle;
  let cs: ControlServer;
  const labName = testLabName(`r5x-${control.slice(0, 2)}`);
  const internetIp = (node: string) => lab.ip(node, "internet");
  const lanIp = (node: string) => lab.ip(node, "home");
  const lan = () => `${lanIp("lanhost").replace(/\.\d+$/, ".0")}/24`;

  /** What an echo service says it sees, asked from `node` (empty: no answer within 2 s). */
  const echoFrom = async (node: string, url: string) => (await lab.sh(node, `curl -s --max-time 2 ${url}`)).stdout.trim();
  const internetEcho = (node: string) => echoFrom(node, `http://${ECHO}/`);
  const lanEcho = () => echoFrom("ts-alice", `http://${lanIp("lanhost")}/`);
  const setExitNode = (node: string, name: string) => lab.sh(node, `tailscale set --exit-node=${name}`);
  const online = async (name: string) => (await cs.nodes()).some((n) => n.given_name === name && n.online);
  const primaryFor = async (prefix: string) => (await cs.nodes()).find((n) => n.subnet_routes?.includes(prefix))?.given_name;
  /** The state-aware hints `check EXERCISE --json` shows now. */
  const mistakes = async (exercise: string) => (await mistakesShown(lab, exercise)).join(" | ");

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-5", { lab: labName, options: { control } });
    cs = lab.controlServer();
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("before approval (negative control): the echo sees alice's own address, and --exit-node is refused", async () => {
    expect(await internetEcho("ts-alice")).toBe(internetIp("ts-alice"));
    const set = await setExitNode("ts-alice", "exit");
    expect(set.exitCode).not.toBe(0);
    expect(`${set.stdout}${set.stderr}`).toMatch(/not advertising an exit node/);
    expect((await lab.check("exit-node")).ok).toBe(false);
    expect(await mistakes("exit-node")).toMatch(/offers no exit node: its routes .* not approved/);
  });

  it("approved but not allowed by the policy (no autogroup:internet): alice is offered no exit", async () => {
    await lab.solve("policy"); // the reference policy: no autogroup:internet
    expect((await lab.sh("headscale", "headscale nodes approve-routes -i 4 -r 0.0.0.0/0,::/0")).exitCode).toBe(0);
    await eventually("the exit node's routes approved in the control server", async () =>
      (await cs.nodes()).find((n) => n.given_name === "exit")?.approved_routes?.includes("0.0.0.0/0"),
    );
    const set = await setExitNode("ts-alice", "exit");
    console.log(`[${control}] approved, no autogroup:internet: alice's set --exit-node: ${(set.stdout + set.stderr).trim()}`);
    expect(set.exitCode).not.toBe(0);
    expect(await internetEcho("ts-alice")).toBe(internetIp("ts-alice"));
    expect((await lab.check("exit-node")).ok).toBe(false);
    expect(await mistakes("exit-node")).toMatch(/has no `exit` at all/);
  });

  it("solve: with autogroup:internet for admins, the echo sees the exit node's address from alice; bob is refused", async () => {
    const t0 = Date.now();
    await lab.solve("exit-node");
    console.log(`[${control}] solve exit-node ${Date.now() - t0} ms`);
    expect((await lab.check("exit-node")).ok).toBe(true);
    expect(await internetEcho("ts-alice")).toBe(internetIp("ts-exit"));
    // Bob is no admin: not offered the exit node, and his traffic leaves with his own address.
    const bob = await setExitNode("ts-bob", "exit");
    expect(bob.exitCode).not.toBe(0);
    console.log(`[${control}] bob's set --exit-node: ${(bob.stdout + bob.stderr).trim()}`);
    expect(await internetEcho("ts-bob")).toBe(internetIp("ts-bob"));
    // And back: without the exit node alice's own address shows again (the exit node made the difference).
    expect((await setExitNode("ts-alice", "")).exitCode).toBe(0);
    await eventually("the echo sees alice's own address again", async () => (await internetEcho("ts-alice")) === internetIp("ts-alice"));
    expect((await lab.check("exit-node")).ok).toBe(false);
    expect((await setExitNode("ts-alice", "exit")).exitCode).toBe(0);
    await eventually("the echo sees the exit node again", async () => (await internetEcho("ts-alice")) === internetIp("ts-exit"));
  });

  /**
   * Pull `router`'s cable and time two things: until the control server marks it offline, and
   * until the LAN host answers alice again, through `standby` (polled, each try at most 2 s).
   */
  const failover = async (router: string, standby: string) => {
    const name = router.replace(/^ts-/, "");
    const cut = await lab.sh(router, "cable cut");
    expect(cut.exitCode, cut.stderr).toBe(0);
    const t0 = performance.now();
    let offlineAt: number | undefined;
    await eventually(
      `the LAN host answering through ${standby}`,
      async () => {
        if (offlineAt === undefined && !(await online(name))) offlineAt = (performance.now() - t0) / 1000;
        const seen = await lanEcho();
        if (seen === lanIp(standby)) return true;
        throw new Error(`the LAN host answered ${JSON.stringify(seen)}; ${name} ${offlineAt === undefined ? "online" : "offline"}`);
      },
      { timeout: TIMEOUT.converge, interval: 250 },
    );
    const answered = (performance.now() - t0) / 1000;
    offlineAt ??= (await online(name)) ? undefined : answered;
    console.log(
      `[${control}] failover ${name} -> ${standby.replace(/^ts-/, "")}: ${name} offline in the control server after ${offlineAt?.toFixed(1) ?? "?"} s, LAN host answering again after ${answered.toFixed(1)} s`,
    );
    return answered;
  };

  const restore = async (router: string) => {
    const name = router.replace(/^ts-/, "");
    expect((await lab.sh(router, "cable restore")).exitCode).toBe(0);
    const back = await timeUntil(`${name} online again`, () => online(name), { timeout: TIMEOUT.recovery });
    console.log(`[${control}] ${name} online again ${back.toFixed(1)} s after its cable was restored`);
  };

  it("HA: cut router1's cable, router2 takes over; restored, router1 stays standby (no flap); then the other way round", async () => {
    await lab.sh("headscale", "headscale policy set -f /root/zerotrust.hujson");
    // Negative control: router1 is primary, the LAN host sees router1, and the check fails.
    await eventually("the LAN host answering alice through router1", async () => {
      const seen = await lanEcho();
      if (seen === lanIp("ts-router1")) return true;
      throw new Error(`the LAN host answered ${JSON.stringify(seen)}; primary in the control server: ${await primaryFor(lan())}`);
    }).catch(async (e: Error) => {
      // Why router1 is not primary: the control server's last words (a reconnect, a PING timeout).
      throw new Error(`${e.message}\ncontrol server log:\n${await lab.engine.logTail(lab.container("headscale"), 40)}`);
    });
    expect(await primaryFor(lan())).toBe("router1");
    expect((await lab.check("ha-routers")).ok).toBe(false);
    expect(await mistakes("ha-routers")).toMatch(/router1 still forwards/);

    const first = await failover("ts-router1", "ts-router2");
    expect(await primaryFor(lan())).toBe("router2");
    expect((await lab.check("ha-routers")).ok).toBe(true);
    await restore("ts-router1");
    // Both servers keep a healthy primary: router2 still serves, and the LAN host still sees it.
    expect(await primaryFor(lan())).toBe("router2");
    expect(await lanEcho()).toBe(lanIp("ts-router2"));

    const second = await failover("ts-router2", "ts-router1");
    expect(await primaryFor(lan())).toBe("router1");
    expect((await lab.check("ha-routers")).ok).toBe(false);
    await restore("ts-router2");
    expect(await primaryFor(lan())).toBe("router1");

    // The exercise's own solution: it cuts router1, and its check passes once router2 answers.
    await lab.solve("ha-routers");
    expect((await lab.check("ha-routers")).ok).toBe(true);
    await restore("ts-router1");
    console.log(`[${control}] failover times: ${first.toFixed(1)} s, ${second.toFixed(1)} s`);
    expect(first).toBeLessThan(40);
    expect(second).toBeLessThan(40);
  });

  // tailscaled closes its connection: nothing to probe, but both servers wait up to 10 s for a reconnect first.
  it("HA: stopping the primary's container fails over once the server's reconnect grace is over", async () => {
    expect(await primaryFor(lan())).toBe("router2");
    expect(await lanEcho()).toBe(lanIp("ts-router2"));
    const t0 = performance.now();
    await lab.engine.stop(lab.container("ts-router2"));
    const stopped = (performance.now() - t0) / 1000;
    const answered = await timeUntil("the LAN host answering through router1", async () => (await lanEcho()) === lanIp("ts-router1"), {
      timeout: TIMEOUT.converge,
      interval: 250,
    });
    console.log(
      `[${control}] container stop router2 -> router1: stop took ${stopped.toFixed(1)} s, LAN host answering through router1 ${answered.toFixed(1)} s after it`,
    );
    expect(await primaryFor(lan())).toBe("router1");
    expect(answered).toBeLessThan(30);
    await lab.engine.start(lab.container("ts-router2"));
    const back = await timeUntil("router2 online again", () => online("router2"), { timeout: TIMEOUT.recovery });
    console.log(`[${control}] router2 online again ${back.toFixed(1)} s after its container started`);
    expect(await primaryFor(lan())).toBe("router1");
  });
});
