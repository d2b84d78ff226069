/**
 * recipe-4 beyond the NAT types: every exercise round-tripped on a fresh lab, the DERP capture
 * (ciphertext on the relay, clear text on the LAN), impairments switched live (loss, rate,
 * latency where the kernel has netem), the coordinator blackholed after connect, and the
 * workspace's live paths pane. One lab (Headscale; WG3_CONTROLS picks others), started with
 * site B behind a hard NAT so that the first exercise's check fails on the fresh lab.
 */
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setOptions } from "../../src/lab/actions.ts";
import { qdiscsIn } from "../../src/lab/impairments.ts";
import { status } from "../../src/lab/lifecycle.ts";
import type { TailscaleInContainer, TsPong } from "../../src/nodes/tailscale.ts";
import { sessionName } from "../../src/workspace/tmux.ts";
import { eventually } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";
import { spawnStartTs, startTs } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

const controls = (process.env.WG3_CONTROLS ?? "headscale").split(",");

describe.each(controls)("recipe-4 (--control %s): exercises, capture, impairments, blackhole, paths pane", (control) => {
  let lab: LabHandle;
  let a: TailscaleInContainer;
  let b: TailscaleInContainer;
  let aIp: string;
  const labName = testLabName(`r4i-${control}`);
  const timings: string[] = [];
  const cli = (...args: string[]) => startTs([...args, "--lab", labName], { env: { NO_COLOR: "1" } });
  const setNat = (values: Record<string, string>) =>
    setOptions({ engine: lab.engine, recipe: lab.recipe, plan: lab.plan, captured: {} }, values);
  const secret = () => lab.plan.vars.secret!;
  const web = () => lab.ip("webserver", "site-a");

  /** b's own answer about its path to a, polled until it is `want`. */
  async function bToA(want: TsPong["path"]): Promise<TsPong> {
    return eventually(
      `b -> a ${want}`,
      async () => {
        const p = await b.pong(aIp, 2);
        if (p.path !== want) throw new Error(`b -> a is ${p.path} (${p.via})`);
        return p;
      },
      { timeout: TIMEOUT.converge },
    );
  }

  /** The relay's own counter of TCP 443 bytes (nft, table wg3relay made by setup). */
  async function relayBytes(): Promise<number> {
    const r = await lab.sh("headscale", "nft list counter ip wg3relay https-in; nft list counter ip wg3relay https-out");
    return [...r.stdout.matchAll(/bytes (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  }

  /**
   * The relay's byte count once the upload has crossed it: less than 2 kB more a second later.
   * Not "no change": a relayed pair's disco pings and keepalives go through the relay too.
   */
  async function relayBytesSettled(): Promise<number> {
    let last = await relayBytes();
    return eventually(
      "the relay's counters settle",
      async () => {
        await new Promise((r) => setTimeout(r, 1000)); // the quiet second is what is measured
        const now = await relayBytes();
        const settled = now - last < 2_000;
        if (!settled) last = now;
        return settled ? now : undefined;
      },
      { timeout: TIMEOUT.short },
    );
  }

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-4", { lab: labName, options: { control, "nat-b": "hard" } });
    a = lab.tailscale("ts-a");
    b = lab.tailscale("ts-b");
    aIp = await a.ip();
  });
  afterAll(async () => {
    if (timings.length) console.info(`recipe-4 impair (${control}):\n  ${timings.join("\n  ")}`);
    await execa("tmux", ["kill-session", "-t", `=${sessionName(labName, "recipe-4")}`], { reject: false });
    await lab?.stop();
  });

  it("every exercise, in order, on the fresh lab: check fails, solve, check passes", async () => {
    const ids = lab.recipe.exercises.map((e) => e.id);
    expect(ids).toEqual(["easy-direct", "hard-relayed", "forward-fix", "udp-blocked", "derp-capture"]);
    for (const id of ids) {
      const before = await lab.check(id);
      expect(before.ok, `${id} passes before its solution`).toBe(false);
      const t0 = Date.now();
      await lab.solve(id);
      const after = await lab.check(id);
      expect(after.ok, `${id} after solve: ${after.detail}`).toBe(true);
      timings.push(`${id}: solve + check ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  });

  describe("the DERP relay forwards ciphertext", () => {
    it("a secret sent through the relayed tunnel is in clear on site A's LAN, never in the relay's capture", async () => {
      // Still in the udp-blocked stage: b reaches a only through the relay.
      expect((await b.pong(aIp, 2)).path).toBe("relayed");
      await lab.solve("derp-capture");
      // Negative control first: the same capture, on the plain LAN side, shows the secret.
      expect(await lab.succeeds("webserver", `grep -aq '${secret()}' /tmp/lan.pcap`)).toBe(true);
      // The relay captured the relayed traffic (packets on 443 while the request went through)...
      const packets = await lab.sh("headscale", "tcpdump -r /tmp/derp.pcap 2>/dev/null | wc -l");
      expect(Number(packets.stdout.trim())).toBeGreaterThanOrEqual(10);
      // ...and never the secret.
      expect(await lab.succeeds("headscale", `grep -aq '${secret()}' /tmp/derp.pcap`)).toBe(false);
    });

    it("the relay's counters grow while relayed (more than half the payload), not while direct (negative control)", async () => {
      const payload = 300_000;
      // iperf3 sends exactly `payload` bytes from b to a's webserver, through the tailnet.
      await lab.sh("webserver", "iperf3 -s -D");
      const send = async () => {
        const r = await b.sh(`iperf3 -c ${web()} -n ${payload} -J`);
        expect(r.exitCode, r.stdout.slice(-300)).toBe(0);
      };
      // Direct first: the same upload leaves the relay's counters nearly still.
      await setNat({ "nat-a": "easy", "nat-b": "easy" });
      await bToA("direct");
      let before = await relayBytes();
      await send();
      const direct = (await relayBytesSettled()) - before;
      expect(direct).toBeLessThan(payload / 10);
      // Relayed: the bytes go through the relay, in from b and out to a. iperf3 can report
      // before its last segments have crossed the relay, so the counters are read once settled.
      await setNat({ "nat-a": "udp-blocked" });
      await bToA("relayed");
      before = await relayBytes();
      await send();
      const relayed = (await relayBytesSettled()) - before;
      // In from b plus out to a would be twice the payload; measured 0.8x to 2.3x (CI and by
      // hand), for reasons not yet known. What always holds: far more than the direct run.
      expect(relayed).toBeGreaterThan(payload / 2);
      timings.push(`relay bytes for a ${payload} B upload: direct ${direct}, relayed ${relayed}`);
    });
  });

  describe("impairments, switched live", () => {
    beforeAll(async () => {
      await setNat({ "nat-a": "easy", "nat-b": "easy" });
      // An iperf3 server on the internet side (the second STUN server's container).
      await lab.sh("stun", "iperf3 -s -D");
    });

    /** Replies to `count` pings from ts-b to the STUN server, through router-b. */
    async function pingsAnswered(count: number): Promise<number> {
      const r = await b.sh(`ping -n -q -c ${count} -i 0.05 -W 1 ${lab.ip("stun", "internet")}`);
      return Number(/(\d+) received/.exec(r.stdout)?.[1] ?? -1);
    }

    it("loss-b=30 drops about half the round trips (nft numgen), loss-b=0 none", async () => {
      expect(await pingsAnswered(60)).toBe(60);
      expect((await cli("set", "recipe-4", "loss-b=30")).code).toBe(0);
      const got = await pingsAnswered(60);
      // 30% each way: ~49% of round trips answered; far from 0 and far from 60.
      expect(got).toBeGreaterThan(5);
      expect(got).toBeLessThan(50);
      const dropped = await lab.sh("router-b", "nft list table ip wg3loss");
      expect(dropped.stdout).toMatch(/numgen random mod 100 < 30 counter packets [1-9]/);
      timings.push(`loss-b=30: ${got}/60 pings answered`);
      expect((await cli("set", "recipe-4", "loss-b=0")).code).toBe(0);
      expect(await pingsAnswered(60)).toBe(60);
    });

    it("rate-b=1mbit caps site B's upload (tc tbf), unlimited lifts the cap", async () => {
      const upload = async () => {
        const r = await b.sh(`iperf3 -c ${lab.ip("stun", "internet")} -t 3 -J`);
        return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
      };
      const free = await upload();
      expect(free).toBeGreaterThan(20e6);
      expect((await cli("set", "recipe-4", "rate-b=1mbit")).code).toBe(0);
      expect((await lab.sh("router-b", "tc qdisc show")).stdout).toMatch(/tbf .*rate 1Mbit/);
      const capped = await upload();
      expect(capped).toBeLessThan(1.5e6);
      expect(capped).toBeGreaterThan(0.5e6);
      expect((await cli("set", "recipe-4", "rate-b=unlimited")).code).toBe(0);
      expect(await upload()).toBeGreaterThan(20e6);
      timings.push(`upload: ${(free / 1e6).toFixed(0)} Mbit/s free, ${(capped / 1e6).toFixed(2)} Mbit/s at rate-b=1mbit`);
    });

    it("latency needs netem: refused in one sentence with nothing changed where the kernel lacks it, applied where it has it", async () => {
      const has = await qdiscsIn(lab.engine, lab.container("router-b"));
      const doctor = await startTs(["doctor"]);
      expect(doctor.stdout).toMatch(/network impairments: supported: loss \(nftables numgen\)/);
      expect(doctor.stdout.includes("not on this kernel: latency (netem)")).toBe(!has.netem);
      const state = "nft list ruleset; tc qdisc show";
      const rules = (await lab.sh("router-b", state)).stdout;
      const r = await cli("set", "recipe-4", "loss-b=10", "latency-b=20ms");
      if (!has.netem) {
        expect(r.code).toBe(2);
        expect(r.stderr.trim()).toBe(
          "latency-b=20ms needs the netem queueing discipline, which this host's kernel lacks (CONFIG_NET_SCH_NETEM not set); nothing was changed (./start.ts doctor lists the impairments this host supports).",
        );
        // Not even the valid loss-b=10 before it was applied.
        expect((await lab.sh("router-b", state)).stdout).toBe(rules);
        // Control: the same command without the latency goes through.
        expect((await cli("set", "recipe-4", "loss-b=10")).code).toBe(0);
        expect((await lab.sh("router-b", state)).stdout).not.toBe(rules);
        expect((await cli("set", "recipe-4", "loss-b=0")).code).toBe(0);
        // At start, the same sentence comes before anything is created.
        const other = testLabName("r4i-netem");
        const start = await startTs(["recipe-4", "--no-attach", "--lab", other, "--latency-a", "20ms"]);
        expect(start.code).toBe(2);
        expect(start.stderr.trim().split("\n").at(-1)).toMatch(
          /^latency-a=20ms needs the netem queueing discipline, .* nothing was changed/,
        );
        expect(await status(lab.engine, "recipe-4", other)).toEqual([]);
        return;
      }
      expect(r.code).toBe(0);
      const rtt = async () =>
        Number(/= [\d.]+\/([\d.]+)\//.exec((await b.sh(`ping -n -q -c 5 ${lab.ip("stun", "internet")}`)).stdout)?.[1]);
      expect(await rtt()).toBeGreaterThan(35);
      expect((await cli("set", "recipe-4", "loss-b=0", "latency-b=0ms")).code).toBe(0);
      expect(await rtt()).toBeLessThan(10);
    });
  });

  describe("the coordinator blackholed after connect", () => {
    const health = (c: TailscaleInContainer) =>
      c.sh(`curl -sk -o /dev/null -w '%{http_code}' --max-time 3 https://${lab.ip("headscale", "internet")}/`).then((r) => r.stdout.trim());
    /** A second tailscaled on ts-a (userspace, its own socket and state): a brand-new login. */
    const fresh = (cmd: string) => a.sh(`tailscale --socket=/tmp/fresh.sock ${cmd}`);

    it("existing peers keep their direct tunnel; a new login fails until the coordinator is back", async () => {
      await setNat({ "nat-a": "easy", "nat-b": "easy" });
      await bToA("direct");
      // "000": curl got no HTTP answer at all.
      expect(await health(b)).not.toBe("000");
      const key = await lab.controlServer().createPreAuthKey(1);
      await a.sh(
        "mkdir -p /tmp/fresh; tailscaled --tun=userspace-networking --statedir=/tmp/fresh --socket=/tmp/fresh.sock --port=0 >/tmp/fresh.log 2>&1 & echo $! >/tmp/fresh.pid",
      );
      await eventually("the second tailscaled's socket", () => a.sh("test -S /tmp/fresh.sock").then((r) => r.exitCode === 0));
      const up = `up --login-server https://${lab.ip("headscale", "internet")} --auth-key ${key} --hostname fresh --timeout 15s`;

      expect((await cli("set", "recipe-4", "coordinator=blackholed")).code).toBe(0);
      // The blackhole holds: neither site reaches the coordinator...
      expect(await health(b)).toBe("000");
      expect(await health(a)).toBe("000");
      // ...a new login cannot register...
      const refused = await fresh(up);
      expect(refused.exitCode).not.toBe(0);
      // ...yet the peers still talk directly, and b still reaches a's webserver through a's route.
      expect((await b.pong(aIp, 2)).path).toBe("direct");
      expect((await a.pong(await b.ip(), 2)).path).toBe("direct");
      expect((await b.curl(`http://${web()}/`)).stdout).toContain("Hello from Caddy!");

      // Control: with the coordinator back, the same login goes through (the daemon may be in
      // a retry backoff from the failed attempt: a longer deadline).
      expect((await cli("set", "recipe-4", "coordinator=reachable")).code).toBe(0);
      const ok = await fresh(up.replace("--timeout 15s", "--timeout 60s"));
      expect(ok.exitCode, ok.stderr).toBe(0);
      await fresh("logout").catch(() => {});
      await a.sh("kill $(cat /tmp/fresh.pid)");
    });
  });

  describe("the live paths view", () => {
    it("paths --watch refreshes and ends cleanly on Ctrl-C (exit 0, no cleanup message)", async () => {
      const run = spawnStartTs(["paths", "recipe-4", "--watch", "--every", "1", "--no-netcheck", "--lab", labName]);
      await eventually("two reports", () => (run.output().match(/paths at \d\d:\d\d:\d\d UTC/g) ?? []).length >= 2, {
        timeout: TIMEOUT.converge,
        seen: () => run.output().slice(-400),
      });
      expect(run.output()).toMatch(/ts-b +ts-a +DIRECT/);
      run.child.kill("SIGINT");
      const end = await run.done;
      expect(end.code).toBe(0);
      expect(end.stderr).not.toMatch(/Interrupted/);
    });

    it("the workspace has a paths pane beside the clients' shells, refreshing from the clients", async () => {
      const session = sessionName(labName, "recipe-4");
      const exists = async () => (await execa("tmux", ["has-session", "-t", `=${session}`], { reject: false })).exitCode === 0;
      expect(await exists()).toBe(false);
      const r = await cli("recipe-4", "--no-attach", "--control", control);
      expect(r.code, r.stderr).toBe(0);
      expect(await exists()).toBe(true);
      const panes = (await execa("tmux", ["list-panes", "-t", `=${session}:0`, "-F", "#{pane_id}\t#{pane_title}"])).stdout
        .split("\n")
        .map((l) => l.split("\t") as [string, string]);
      expect(panes.map(([, t]) => t)).toContain("paths (live, from the clients)");
      const id = panes.find(([, t]) => t === "paths (live, from the clients)")![0];
      const screen = () => execa("tmux", ["capture-pane", "-p", "-J", "-t", id]).then((x) => x.stdout);
      const first = await eventually("a report in the paths pane", async () => /paths at (\d\d:\d\d:\d\d)/.exec(await screen())?.[1], {
        timeout: TIMEOUT.converge,
      });
      expect(await screen()).toMatch(/ts-b +ts-a +DIRECT/);
      // It refreshes: a later report replaces the first one on the screen.
      await eventually("a newer report", async () => {
        const at = /paths at (\d\d:\d\d:\d\d)/.exec(await screen())?.[1];
        return at && at !== first;
      });
    });
  });
});
