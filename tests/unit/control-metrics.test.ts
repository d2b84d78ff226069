import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ControlClient } from "../../src/control/client.ts";
import { parseConfig } from "../../src/control/config.ts";
import { formatKey, newKeyPair } from "../../src/control/keys.ts";
import { ControlServer } from "../../src/control/server.ts";
import { eventually } from "../support/eventually.ts";

/** Prometheus /metrics on metrics_listen_addr, and only there. */

const root = mkdtempSync(join(tmpdir(), "wg3-metrics-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** name{labels} -> value, from the text exposition format. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z0-9_:]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

describe("metrics", () => {
  it("counts nodes, streams, map bytes, register outcomes and refusals, on its own address", async () => {
    const config = parseConfig(
      [
        "server_url: http://127.0.0.1:1",
        "listen_addr: 127.0.0.1:0",
        "metrics_listen_addr: 127.0.0.1:0",
        `state_dir: ${root}`,
        `unix_socket: ${join(root, "admin.sock")}`,
        "dns: { base_domain: tailnet.test }",
        'derp: { server: { enabled: true, stun_listen_addr: "" } }',
      ].join("\n"),
    );
    const ctl = new ControlServer(config, () => {});
    const { port, metricsPort } = await ctl.start();
    const scrape = async () => parse(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
    const before = await scrape();
    expect([before.get("wg3_control_nodes"), before.get("wg3_control_map_streams"), before.get("wg3_control_map_bytes_total")]).toEqual([
      0, 0, 0,
    ]);

    const key = ctl.tailnet.createPreAuthKey(ctl.tailnet.createUser("hope").id, {}).key;
    const c = await ControlClient.connect({ url: `http://127.0.0.1:${port}` });
    const nk = formatKey("nodekey", newKeyPair().publicKey);
    await c.register({ nodeKey: nk, authKey: key, hostname: "m" });
    expect((await c.register({ nodeKey: formatKey("nodekey", newKeyPair().publicKey), authKey: key, hostname: "again" })).Error).toMatch(
      /used/,
    );
    expect((await c.postRaw("/machine/register", { Version: 138.5 })).status).toBe(400);
    await c.mapStream({ nodeKey: nk, hostname: "m" }, () => {});
    const m = await eventually("the map stream counted", async () => {
      const x = await scrape();
      return x.get("wg3_control_map_streams") === 1 && x;
    });
    expect(m.get("wg3_control_nodes")).toBe(1);
    expect(m.get("wg3_control_nodes_online")).toBe(1);
    expect(m.get("wg3_control_noise_connections")).toBe(1);
    expect(m.get("wg3_control_map_bytes_total")).toBeGreaterThan(100);
    expect(m.get('wg3_control_register_total{outcome="authkey"}')).toBe(1);
    expect(m.get('wg3_control_register_total{outcome="refused"}')).toBe(1);
    expect(m.get('wg3_control_refused_total{request="register"}')).toBe(1);
    expect(m.get("process_resident_memory_bytes")).toBeGreaterThan(1e6);
    // Not on the control port.
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(404);
    c.close();
    await ctl.close();
  });
});
