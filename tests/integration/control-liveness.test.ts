import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../../src/control/admin-cli.ts";
import { eventually } from "../support/eventually.ts";
import { TIMEOUT } from "../support/timeouts.ts";
import { CuttableLink, cleanup, HostControl, HostTailscaled, tailscaleBins, tempDir } from "./tailscaled-host.ts";

/**
 * A client that vanishes without closing its connection (process frozen, cable cut) must be
 * marked offline within seconds, so a standby subnet router takes over its route. The server
 * sends HTTP/2 PINGs inside Noise (here every 1 s, 3 s to answer: room for a busy test machine); the negative control runs
 * the same freeze with PINGs off, where the node stays "online" as it did before.
 */

const bins = tailscaleBins();
if (!bins) throw new Error("the pinned tailscale binaries are not built: run ./start.ts setup first");
const ROUTE = "192.168.77.0/24";

interface AdminNode {
  id: number;
  given_name: string;
  online: boolean;
  subnet_routes: string[];
}

describe("stale map streams are noticed within seconds", () => {
  const dir = tempDir("wg3-control-live-");
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const f of cleanups.reverse()) await f();
    delete process.env.WG3_CONTROL_SOCKET;
    cleanup(dir);
  });

  /** A server, and two subnet routers for ROUTE (r1 primary), one of them behind a cuttable link. */
  async function tailnet(name: string, limits: string) {
    const ctl = new HostControl(join(dir, name, "control"), 0, 0, [`limits: { ${limits} }`]);
    await ctl.start();
    cleanups.push(() => ctl.stop());
    process.env.WG3_CONTROL_SOCKET = ctl.socket;
    await runCli(["users", "create", "hope"]);
    const key = (await runCli(["preauthkeys", "create", "-u", "hope", "--reusable"])).trim();
    const link = await new CuttableLink(ctl.port).start();
    cleanups.push(() => link.stop());
    const router = async (host: string, url: string) => {
      const c = new HostTailscaled(host, join(dir, name, host), bins!, { SSL_CERT_FILE: ctl.caFile });
      cleanups.push(() => c.stop());
      await c.start();
      const r = await c.cli([
        "up",
        `--login-server=${url}`,
        `--auth-key=${key}`,
        `--hostname=${host}`,
        `--advertise-routes=${ROUTE}`,
        "--timeout=30s",
      ]);
      expect(r.exitCode, r.all).toBe(0);
      return c;
    };
    const r1 = await router("r1", ctl.url);
    const r2 = await router("r2", `https://127.0.0.1:${link.port}`);
    for (const n of await nodes()) await runCli(["nodes", "approve-routes", "-i", String(n.id), "-r", ROUTE]);
    await eventually("r1 online and primary", async () => (await node("r1")).subnet_routes.includes(ROUTE) && (await node("r2")).online, {
      timeout: TIMEOUT.converge,
    });
    return { ctl, link, r1, r2 };
  }
  const nodes = async () => JSON.parse(await runCli(["nodes", "list", "-o", "json"])) as AdminNode[];
  const node = async (name: string) => (await nodes()).find((n) => n.given_name === name)!;

  it("a frozen primary router (SIGSTOP) goes offline and its route fails over; a cut cable is noticed too", async () => {
    const { ctl, link, r1 } = await tailnet("ping", "ping_interval: 1s, ping_timeout: 3s");
    const t0 = Date.now();
    r1.proc!.kill("SIGSTOP");
    await eventually(
      "r1 offline and r2 primary for the route",
      async () => !(await node("r1")).online && (await node("r2")).subnet_routes.includes(ROUTE),
      { timeout: TIMEOUT.short },
    );
    const failover = Date.now() - t0;
    expect(ctl.logs.join("\n")).toMatch(/no answer to an HTTP\/2 PING/);
    // Thawed, r1 reconnects and is online again; r2 keeps the route (no flapping back).
    r1.proc!.kill("SIGCONT");
    await eventually("r1 online again", async () => (await node("r1")).online, { timeout: TIMEOUT.converge });
    expect((await node("r2")).subnet_routes).toEqual([ROUTE]);

    // r2's cable is cut: nothing passes, nothing is closed.
    const t1 = Date.now();
    link.cut();
    await eventually(
      "r2 offline, r1 primary again",
      async () => !(await node("r2")).online && (await node("r1")).subnet_routes.includes(ROUTE),
      { timeout: TIMEOUT.short },
    );
    const cut = Date.now() - t1;
    process.stdout.write(`failover after SIGSTOP: ${failover} ms; offline after a cut cable: ${cut} ms\n`);
    expect(failover).toBeLessThan(8_000);
    expect(cut).toBeLessThan(8_000);
  });

  it("negative control: with PINGs off, a frozen router stays online and keeps its route", async () => {
    const { r1 } = await tailnet("noping", "ping_interval: 0s");
    r1.proc!.kill("SIGSTOP");
    try {
      // Longer than the PING test needed to fail over: nothing notices the freeze here.
      await new Promise((r) => setTimeout(r, 8_000));
      const [a, b] = [await node("r1"), await node("r2")];
      expect([a.online, a.subnet_routes, b.subnet_routes]).toEqual([true, [ROUTE], []]);
    } finally {
      r1.proc!.kill("SIGCONT");
    }
  });
});
