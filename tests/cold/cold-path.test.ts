/**
 * The newcomer's first run, on every CI run: `./start.ts setup` with an empty harness cache and
 * empty Go module and build caches must build the pinned Tailscale, Headscale and wireguard-go,
 * and the binaries must run. CI's own caches are warm, so without this a broken cold path stays
 * green. Slow by nature (cold Go builds): runs with WG3_COLD=1 (`npm run test:cold`, CI).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import type { BinaryName } from "../../src/binaries.ts";
import { versions } from "../../src/versions.ts";
import { startTs } from "../support/start-ts.ts";

const COLD = process.env.WG3_COLD === "1";
const root = COLD ? mkdtempSync(join(tmpdir(), "wg3-cold-")) : "";
const dirs = { cache: join(root, "harness"), gomod: join(root, "gomod"), gobuild: join(root, "gobuild") };
const coldEnv = { WG3_CACHE_DIR: dirs.cache, GOMODCACHE: dirs.gomod, GOCACHE: dirs.gobuild, GOFLAGS: "-modcacherw" };

function binDir(name: BinaryName): string {
  return join(dirs.cache, "bin", `${name}-${versions[name]}-linux-amd64`);
}

describe.runIf(COLD)("cold path: setup from empty harness, Go module and Go build caches", () => {
  afterAll(() => {
    // Module cache files are read-only unless built with -modcacherw; make sure they can go.
    spawnSync("chmod", ["-R", "u+w", root]);
    rmSync(root, { recursive: true, force: true });
  }, 120_000);

  it("negative control: a plain `go install` of headscale with only a version-list file proxy fails from an empty module cache", async () => {
    // The code path before the fix; if the Go proxy ever serves headscale's version list,
    // this control says so instead of passing silently.
    const proxy = join(root, "list-proxy", "github.com", "juanfont", "headscale");
    mkdirSync(join(proxy, "@v"), { recursive: true });
    writeFileSync(join(proxy, "@v", "list"), `${versions.headscale}\n`);
    writeFileSync(join(proxy, "@latest"), `${JSON.stringify({ Version: versions.headscale })}\n`);
    const r = await execa("go", ["install", `github.com/juanfont/headscale/cmd/headscale@${versions.headscale}`], {
      reject: false,
      all: true,
      env: {
        GOMODCACHE: join(root, "control-gomod"),
        GOCACHE: join(root, "control-gobuild"),
        GOBIN: join(root, "control-bin"),
        GOFLAGS: "-modcacherw",
        CGO_ENABLED: "0",
        GOPROXY: `file://${join(root, "list-proxy")},${process.env.GOPROXY || "https://proxy.golang.org,direct"}`,
      },
      timeout: 120_000,
    });
    expect(r.exitCode, String(r.all)).not.toBe(0);
    expect(String(r.all)).toMatch(/loading deprecation|@v\/list: 403/);
  });

  it("./start.ts setup --yes builds the pinned binaries into the empty cache, and they run", async () => {
    const t0 = Date.now();
    const r = await startTs(["setup", "--yes"], { env: coldEnv, timings: true, timeoutMs: 1_500_000 });
    expect(r.code, r.all.slice(-3000)).toBe(0);
    const steps = r.steps.filter((s) => /go install/.test(s.title));
    console.info(
      `cold path: setup ${((Date.now() - t0) / 1000).toFixed(0)} s; ${steps.map((s) => `${s.title.split(" (")[0]} ${(s.ms / 1000).toFixed(0)} s`).join(", ")}`,
    );
    expect(steps.map((s) => s.title.split(" ")[2])).toEqual(["tailscale", "headscale", "wireguard-go"]);
    const headscale = execFileSync(join(binDir("headscale"), "headscale"), ["version"], { encoding: "utf8" });
    expect(headscale).toContain(versions.headscale.replace(/^v/, ""));
    const tailscaled = execFileSync(join(binDir("tailscale"), "tailscaled"), ["--version"], { encoding: "utf8" });
    // A -trimpath build without VCS stamping reports "1.98.10-ERR-BuildInfo": the version is what counts.
    expect(tailscaled.split("\n")[0]).toMatch(new RegExp(`^${versions.tailscale.replace(/^v/, "").replaceAll(".", "\\.")}(-|$)`));
    // A pseudo-version has no release number of its own: the binary names itself, nothing more.
    const wireguardGo = execFileSync(join(binDir("wireguard-go"), "wireguard-go"), ["--version"], { encoding: "utf8" });
    expect(wireguardGo.split("\n")[0]).toMatch(/^wireguard-go v0\.0\.\d{8}$/);
  }, 1_600_000);
});
