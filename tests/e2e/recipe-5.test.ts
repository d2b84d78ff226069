import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MatrixCell, MatrixReport } from "../../src/lab/matrix.ts";
import { eventually } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";
import { mustSucceed, startTs } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

// The same suite against Headscale and against this repo's builtin control server.
const controls = (process.env.WG3_CONTROLS ?? "headscale,builtin").split(",");

const cell = (m: MatrixReport, from: string, to: string, port: number): MatrixCell => {
  const c = m.cells.find((x) => x.from === from && x.to === to && x.port === port);
  if (!c) throw new Error(`no matrix cell ${from} -> ${to}:${port}`);
  return c;
};
const differing = (m: MatrixReport) => m.cells.filter((c) => !c.match).map((c) => `${c.from}->${c.to}:${c.port}=${c.actual}`);
const said = (m: MatrixReport) => m.cells.filter((c) => c.actual === "blocked").map((c) => `${c.from}->${c.to}:${c.port}: ${c.said}`);

describe.each(controls)("recipe-5 with --control %s: zero trust", (control) => {
  let lab: LabHandle;
  const labName = testLabName(`r5-${control.slice(0, 2)}`);
  const matrix = async (): Promise<MatrixReport> =>
    JSON.parse(mustSucceed(await startTs(["matrix", "recipe-5", "--lab", labName, "--json"])).stdout) as MatrixReport;
  const policySet = (file: string) => lab.sh("headscale", `headscale policy set -f ${file}`);

  beforeAll(async () => {
    lab = await LabHandle.start("recipe-5", { lab: labName, options: { control } });
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("before any policy (allow-all) the matrix differs from the intended one and the check fails (negative control)", async () => {
    const t0 = Date.now();
    const m = await matrix();
    console.log(
      `[${control}] matrix (allow-all) in ${Date.now() - t0} ms; differing: ${differing(m).join(" ")}; blocked: ${said(m).join(" / ")}`,
    );
    expect(m.matches).toBe(false);
    expect(cell(m, "ts-bob", "ts-server", 22)).toMatchObject({ intended: "blocked", actual: "open", visible: true, match: false });
    expect(cell(m, "ts-server", "ts-alice", 80)).toMatchObject({ intended: "blocked", actual: "open", match: false });
    expect(cell(m, "ts-bob", "ts-alice", 22)).toMatchObject({ actual: "open", visible: true });
    expect((await lab.check("policy")).ok).toBe(false);
  });

  it("a policy that does not hold (unknown tag, failing tests) is refused with a sentence, and allow-all stays", async () => {
    const bad = await lab.sh(
      "headscale",
      `sed 's/tag:server:22/tag:db:22/' /root/colleague.hujson > /root/bad.hujson && headscale policy set -f /root/bad.hujson`,
    );
    expect(bad.exitCode).not.toBe(0);
    expect(`${bad.stdout}${bad.stderr}`).toMatch(/tag:db/);
    const failing = await lab.sh(
      "headscale",
      `sed 's#"acls": \\[#"tests": [ { "src": "bob@", "deny": ["tag:server:22"] } ], "acls": [#' /root/colleague.hujson > /root/failing.hujson && headscale policy set -f /root/failing.hujson`,
    );
    expect(failing.exitCode).not.toBe(0);
    expect(`${failing.stdout}${failing.stderr}`).toMatch(/bob@ -> tag:server:22/);
    expect(await lab.succeeds("ts-bob", "nc -z -w 2 $(tailscale ip -4 server) 22")).toBe(true);
  });

  it("solve installs the reference policy: the check passes and the matrix matches, bob sees the server but is blocked on 22", async () => {
    const t0 = Date.now();
    await lab.solve("policy");
    const solveMs = Date.now() - t0;
    expect((await lab.check("policy")).ok).toBe(true);
    const m = await matrix();
    console.log(`[${control}] solve policy ${solveMs} ms; matrix differing after: ${differing(m).join(" ") || "none"}`);
    expect(differing(m)).toEqual([]);
    expect(cell(m, "ts-bob", "ts-server", 22)).toMatchObject({ actual: "blocked", visible: true });
    expect(cell(m, "ts-bob", "ts-server", 80)).toMatchObject({ actual: "open", visible: true });
    expect(cell(m, "ts-alice", "ts-server", 22)).toMatchObject({ actual: "open" });
    // Peers: bob and alice may not talk, so neither is in the other's netmap; the server sees both.
    expect(cell(m, "ts-bob", "ts-alice", 22)).toMatchObject({ actual: "blocked", visible: false });
    expect(cell(m, "ts-server", "ts-alice", 80)).toMatchObject({ actual: "blocked", visible: true });
  });

  it("policy mistake: the colleague's policy opens everything, the matrix shows it, solve fixes it", async () => {
    expect((await policySet("/root/colleague.hujson")).exitCode).toBe(0);
    const t0 = Date.now();
    await eventually("bob reaches the server's 22 under the colleague's policy", () =>
      lab.succeeds("ts-bob", "nc -z -w 1 $(tailscale ip -4 server) 22"),
    );
    const propagateMs = Date.now() - t0;
    const open = await matrix();
    console.log(`[${control}] colleague policy in force after ${propagateMs} ms; differing: ${differing(open).join(" ")}`);
    expect(open.matches).toBe(false);
    expect(cell(open, "ts-server", "ts-bob", 22)).toMatchObject({ actual: "open", match: false });
    expect((await lab.check("policy-mistake")).ok).toBe(false);
    await lab.solve("policy-mistake");
    expect((await lab.check("policy-mistake")).ok).toBe(true);
    expect(differing(await matrix())).toEqual([]);
  });

  it(
    "matrix prints intended vs actual side by side",
    async () => {
      const r = mustSucceed(await startTs(["matrix", "recipe-5", "--lab", labName]));
      expect(r.stdout).toMatch(/ts-bob\s+\|?\s*ts-server.*22.*blocked.*visible but blocked.*ok/);
      expect(r.stdout).toContain("All 12 probes match the intended reachability.");
    },
    TIMEOUT.cli,
  );
});
