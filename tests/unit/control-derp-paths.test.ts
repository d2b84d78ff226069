import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../src/control/config.ts";
import { ControlServer } from "../../src/control/server.ts";
import { ROOT } from "../../src/paths.ts";

/**
 * derp.paths, as Headscale's: extra DERP regions (recipe-4's STUN-only region 900) in the map
 * the server hands out, so tailscaled gets two STUN answers and can tell a hard NAT.
 */

const root = mkdtempSync(join(tmpdir(), "wg3-derp-paths-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

const CONFIG = (dir: string, derp: string) =>
  [
    "server_url: http://127.0.0.1:1",
    "listen_addr: 127.0.0.1:0",
    `state_dir: ${dir}`,
    `unix_socket: ${join(dir, "admin.sock")}`,
    "dns: { base_domain: tailnet.test }",
    `derp: { server: { enabled: true, region_id: 999, stun_listen_addr: "" } ${derp} }`,
  ].join("\n");

/** recipe-4's own fragment, its one placeholder filled as the harness would. */
function recipeFragment(): string {
  const text = readFileSync(join(ROOT, "recipes/recipe-4/derp-stun.yaml"), "utf8").replace(/\{\{[^}]*\}\}/g, "10.44.0.12");
  const path = join(root, `derp-${++n}.yaml`);
  writeFileSync(path, text);
  return path;
}

async function derpMapOf(derp: string): Promise<{ Regions: Record<string, Record<string, unknown>> }> {
  const ctl = new ControlServer(parseConfig(CONFIG(join(root, `s${++n}`), derp)), () => {});
  const { port } = await ctl.start();
  try {
    return (await (await fetch(`http://127.0.0.1:${port}/derpmap`)).json()) as { Regions: Record<string, Record<string, unknown>> };
  } finally {
    await ctl.close();
  }
}

describe("derp.paths: extra DERP regions beside the embedded one", () => {
  it("recipe-4's STUN-only region 900 is served with the embedded 999 (without paths: 999 only)", async () => {
    expect(Object.keys((await derpMapOf("")).Regions)).toEqual(["999"]);
    const map = await derpMapOf(`, paths: [${recipeFragment()}]`);
    expect(Object.keys(map.Regions).sort()).toEqual(["900", "999"]);
    expect(map.Regions["900"]).toEqual({
      RegionID: 900,
      RegionCode: "stun",
      RegionName: "Second STUN server (STUN only)",
      Nodes: [{ Name: "900a", RegionID: 900, HostName: "10.44.0.12", IPv4: "10.44.0.12", IPv6: "none", STUNPort: 3478, STUNOnly: true }],
    });
  });

  it("bad fragments are one sentence naming the file and what is wrong", () => {
    const bad = (yaml: string) => {
      const p = join(root, `bad-${++n}.yaml`);
      writeFileSync(p, yaml);
      return () => parseConfig(CONFIG(join(root, "x"), `, paths: [${p}]`));
    };
    expect(bad("regions: { 900: { regionid: 900, nodes: [{ hostname: h, stunonyl: true }] } }")).toThrow(
      /bad-\d+\.yaml: region 900, node 1: "stunonyl" is not a DERP node field \(known: name, .*stunonly/,
    );
    expect(bad("regions: { 999: { regionid: 999, nodes: [{ hostname: h }] } }")).toThrow(/region 999 is the embedded region's id/);
    expect(bad("regions: { 900: { regionid: 901, nodes: [{ hostname: h }] } }")).toThrow(/key and regionid must be the same/);
    expect(bad("stun: 1")).toThrow(ConfigError);
    expect(() => parseConfig(CONFIG(join(root, "x"), ", paths: [/nonexistent/derp.yaml]"))).toThrow(
      "derp.paths: cannot read /nonexistent/derp.yaml: ENOENT",
    );
  });
});
