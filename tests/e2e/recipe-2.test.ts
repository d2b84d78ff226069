import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";
import { TIMEOUT } from "../support/timeouts.ts";

describe("recipe-2: lighthouse + subnet router", () => {
  let lab: LabHandle;
  let web: string;

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-2", { lab: testLabName("r2") });
    web = lab.ip("webserver", "home");
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("before the tunnels are up, roaming can neither trace nor curl the home webserver", async () => {
    expect(await lab.succeeds("roaming", `curl -s --max-time 3 http://${web}/`)).toBe(false);
    const tp = (await lab.sh("roaming", `tracepath -n -m 4 ${web}`)).stdout;
    expect(tp).not.toMatch(/reached/);
    expect((await lab.check("tracepath")).ok).toBe(false);
    expect((await lab.check("curl")).ok).toBe(false);
  });

  it("after wg-quick up, tracepath shows 172.16.100.x hops before the target", async () => {
    await lab.solve("up");
    const tp = (await lab.sh("roaming", `tracepath -n -m 6 ${web}`)).stdout;
    const hops = [...tp.matchAll(/^\s*\d+:\s+(\d+\.\d+\.\d+\.\d+)/gm)].map((m) => m[1]);
    const target = hops.indexOf(web);
    expect(target).toBeGreaterThan(0);
    expect(hops.slice(0, target).every((h) => h?.startsWith("172.16.100."))).toBe(true);
    expect(hops).toContain("172.16.100.1");
  });

  it("curl http://192.168.99.10 returns the Caddy page", async () => {
    const r = await lab.sh("roaming", `curl -s --max-time 5 http://${web}/`);
    expect(r.stdout).toContain("Hello from Caddy!");
  });

  it("the dirty secret: the lighthouse's tunnel capture has the key in clear, its underlay capture does not", async () => {
    await lab.sh(
      "lighthouse",
      "rm -f /tmp/wg.pcap /tmp/eth.pcap; (timeout 10 tcpdump -i recipe-2 -U -w /tmp/wg.pcap tcp port 80 >/tmp/td-wg.log 2>&1 &); (timeout 10 tcpdump -i eth0 -U -w /tmp/eth.pcap udp port 51820 >/tmp/td-eth.log 2>&1 &)",
    );
    await eventually("both captures listening", () =>
      lab.succeeds("lighthouse", "grep -q 'listening on' /tmp/td-wg.log && grep -q 'listening on' /tmp/td-eth.log"),
    );
    expect((await lab.sh("roaming", `curl -s --max-time 5 'http://${web}/?key=supersecretkey'`)).stdout).toContain("Hello from Caddy!");
    await eventually("the request in the tunnel capture", () => lab.succeeds("lighthouse", "grep -aq supersecretkey /tmp/wg.pcap"));
    await eventually("captures finished", () => lab.succeeds("lighthouse", "! pgrep tcpdump"), { timeout: TIMEOUT.capture });
    const underlay = await lab.sh(
      "lighthouse",
      "tshark -r /tmp/eth.pcap -q -z io,stat,0 2>/dev/null | grep -Eo '[0-9]+ +\\|' | head -1; grep -ac supersecretkey /tmp/eth.pcap",
    );
    // The underlay saw the encrypted UDP (frames > 0) but never the secret.
    expect(await lab.succeeds("lighthouse", "[ $(tshark -r /tmp/eth.pcap 2>/dev/null | wc -l) -gt 0 ]")).toBe(true);
    expect(await lab.succeeds("lighthouse", "grep -aq supersecretkey /tmp/eth.pcap")).toBe(false);
    expect(underlay.exitCode).not.toBe(0); // grep -c found 0 matches
  });

  it("all exercises check out after the full solution", async () => {
    await lab.solve("dirty-secret");
    expect((await lab.checkAll()).map((c) => [c.exercise, c.ok])).toEqual([
      ["up", true],
      ["tracepath", true],
      ["curl", true],
      ["dirty-secret", true],
    ]);
  });
});
