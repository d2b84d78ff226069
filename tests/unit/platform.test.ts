/**
 * The platform's bad input and faults, each through the real CLI: one
 * sentence saying what is wrong and what to do, and a non-zero exit. Only what is beside the
 * point is faked: where discovery looks for sockets (WG3_CANDIDATE_SOCKETS), a PATH without
 * podman or go, the path checked for /dev/net/tun (WG3_TUN_DEVICE), and, for the Go case, an
 * engine that only answers /_ping. "Not root" is a real other user (nobody), "no internet"
 * is a real empty network namespace (unshare -n), and dead sockets are real socket files
 * nobody listens on. No container engine is touched.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { versions } from "../../src/versions.ts";
import { startTs, TSX_LOADER } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

const NOBODY = 65534;

let tmp: string;
const servers: Server[] = [];

/** A directory to use as PATH: node and sh, plus the named stubs (scripts that exit 0). */
function binDir(name: string, stubs: string[] = []): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  symlinkSync(process.execPath, join(dir, "node"));
  symlinkSync("/bin/sh", join(dir, "sh"));
  for (const s of stubs) writeFileSync(join(dir, s), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  return dir;
}

/** A unix socket file that exists but nobody listens on (a crashed engine leaves these). */
async function deadSocket(name: string): Promise<string> {
  const live = join(tmp, `${name}.live`);
  const dead = join(tmp, name);
  const server = createServer();
  await new Promise<void>((r) => server.listen(live, r));
  linkSync(live, dead); // a second name for the socket inode, which close() below does not remove
  await new Promise<void>((r) => server.close(() => r()));
  return dead;
}

interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** ./start.ts through node directly (the sh wrapper needs more of PATH than these tests give). */
async function cli(args: string[], env: Record<string, string>, opts: { uid?: number; wrap?: string[] } = {}): Promise<CliRun> {
  const base = {
    HOME: tmp,
    WG3_STATE_DIR: join(tmp, "state"),
    WG3_CACHE_DIR: join(tmp, "cache"),
    WG3_SILENT: "",
    LANG: "C.UTF-8",
  };
  const r = await startTs(args, {
    env: { ...base, ...env },
    cleanEnv: true,
    viaNode: true,
    wrap: opts.wrap,
    uid: opts.uid,
    timeoutMs: TIMEOUT.slowExec,
  });
  return { status: r.code, stdout: r.stdout, stderr: r.stderr };
}

const lines = (s: string) => s.trim().split("\n").filter(Boolean);

/** Can the user nobody read this checkout (a clone under /root is not readable)? */
function nobodyCanRun(): boolean {
  if (process.getuid?.() !== 0) return false;
  const r = spawnSync(process.execPath, ["-e", `require("fs").accessSync(${JSON.stringify(TSX_LOADER)}, 4)`], { uid: NOBODY, gid: NOBODY });
  return r.status === 0;
}

function unshareBin(): string {
  return spawnSync("sh", ["-c", "command -v unshare"], { encoding: "utf8" }).stdout.trim() || "unshare";
}

function canUnshareNet(): boolean {
  return spawnSync(unshareBin(), ["-n", "true"]).status === 0;
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "wg3-platform-"));
  chmodSync(tmp, 0o755); // readable by nobody, for the not-root cases
});

afterAll(async () => {
  // No waiting on close(): a server whose client was a killed CLI may never see its socket end.
  for (const s of servers) {
    s.close();
    s.unref();
  }
  rmSync(tmp, { recursive: true, force: true });
});

describe("no engine, not root", () => {
  const skip = !nobodyCanRun();

  it.skipIf(skip)("nothing installed: one sentence saying what to install or run, exit 1", async () => {
    const r = await cli(
      ["setup", "--yes"],
      {
        PATH: binDir("bin-no-engine"),
        WG3_CANDIDATE_SOCKETS: join(tmp, "absent-podman.sock"),
      },
      { uid: NOBODY },
    );
    expect(r.status, r.stderr).toBe(1);
    expect(lines(r.stderr)).toEqual([
      "No container engine is reachable: install podman and runc (or Docker Engine), or run `sudo ./start.ts setup` on Debian/Ubuntu.",
    ]);
  });

  it.skipIf(skip)("podman installed but no socket answers: one sentence saying to run setup as root, exit 1", async () => {
    const r = await cli(
      ["recipe-0", "--no-attach"],
      {
        PATH: binDir("bin-podman-only", ["podman"]),
        WG3_CANDIDATE_SOCKETS: join(tmp, "absent-podman.sock"),
      },
      { uid: NOBODY },
    );
    expect(r.status, r.stderr).toBe(1);
    expect(lines(r.stderr)).toEqual([
      "podman is installed but no API socket answers; run `sudo ./start.ts setup` to start one (the labs need rootful podman).",
    ]);
  });

  it.skipIf(skip)("root's engine socket is there but not ours to use: one sentence saying permission denied, exit 1", async () => {
    // A live socket that only root may open, as a rootful engine's socket is.
    const path = join(tmp, "root-only.sock");
    const server = createServer((c) => c.destroy());
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    chmodSync(path, 0o600);
    const r = await cli(["status"], { PATH: binDir("bin-denied"), WG3_CANDIDATE_SOCKETS: path }, { uid: NOBODY });
    expect(r.status, r.stderr).toBe(1);
    expect(lines(r.stderr)).toEqual([
      `The container engine socket unix://${path} (WG3_CANDIDATE_SOCKETS) exists but this user may not use it (permission denied); run as root (sudo), as the labs need a rootful engine.`,
    ]);
  });
});

describe("a socket that is there but dead", () => {
  it("DOCKER_HOST naming a socket nobody listens on: setup says so in one sentence, exit 1", async () => {
    const dead = await deadSocket("dead-docker.sock");
    const r = await cli(["setup", "--yes"], { PATH: process.env.PATH!, DOCKER_HOST: `unix://${dead}` });
    expect(r.status, r.stderr).toBe(1);
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr.trim()).toBe(
      `The container engine socket unix://${dead} (DOCKER_HOST) exists but does not answer (connect ECONNREFUSED ${dead}); restart that engine, or remove the stale socket and run ./start.ts setup.`,
    );
  });

  it("an engine socket that accepts but never answers counts as dead too", async () => {
    const path = join(tmp, "hung.sock");
    const server = createServer(() => {}); // accepts, never replies
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    const r = await cli(["status"], { PATH: process.env.PATH!, DOCKER_HOST: `unix://${path}` });
    expect(r.status, r.stderr).toBe(1);
    expect(lines(r.stderr)).toEqual([
      `The container engine socket unix://${path} (DOCKER_HOST) exists but does not answer (no answer in 3000 ms); restart that engine, or remove the stale socket and run ./start.ts setup.`,
    ]);
  });

  it("doctor names the dead socket where discovery looks, marks the engine missing and exits 1", async () => {
    const dead = await deadSocket("dead-candidate.sock");
    const r = await cli(["doctor"], { PATH: process.env.PATH!, WG3_CANDIDATE_SOCKETS: dead });
    expect(r.status, r.stdout).toBe(1);
    expect(r.stdout).toContain(
      `MISSING  container engine: The container engine socket unix://${dead} (WG3_CANDIDATE_SOCKETS) exists but does not answer (connect ECONNREFUSED ${dead})`,
    );
    expect(lines(r.stdout).at(-1)).toMatch(/missing: a lab cannot start yet\.$/);
  });
});

describe("/dev/net/tun missing", () => {
  const env = () => ({
    PATH: process.env.PATH!,
    WG3_TUN_DEVICE: join(tmp, "no-such-dir", "tun"),
    // Nothing here may reach an engine: if the check moved after engine discovery, the
    // message would be about this socket instead and the test would fail.
    DOCKER_HOST: `unix://${join(tmp, "absent-engine.sock")}`,
  });
  const sentence = () =>
    `${join(tmp, "no-such-dir", "tun")} is missing on this host, and WireGuard (wireguard-go) and tailscaled need it; run \`sudo modprobe tun\`, or enable TUN devices for this VM or container.`;

  it("a lab start says so in one sentence before touching the engine, exit 1", async () => {
    const r = await cli(["recipe-0", "--no-attach"], env());
    expect(r.status, r.stderr).toBe(1);
    expect(lines(r.stderr)).toEqual([sentence()]);
  });

  it("doctor marks it missing with the same sentence and exits 1", async () => {
    const r = await cli(["doctor"], env());
    expect(r.status, r.stdout).toBe(1);
    expect(r.stdout).toContain(`MISSING  /dev/net/tun: ${sentence()}`);
  });
});

describe("Go absent and no internet", () => {
  it.skipIf(!canUnshareNet())("setup says the binaries can be neither built nor downloaded, in one sentence, exit 1", async () => {
    // The engine is beside the point here: a socket answering /_ping is enough for setup to
    // go on to the binaries. The network namespace has no interfaces but lo: no internet.
    const sock = join(tmp, "ping-only.sock");
    const engine = createHttpServer((req, res) => {
      if (req.url?.endsWith("/_ping")) {
        res.setHeader("server", "Libpod/4.3.1 (linux)");
        res.end("OK");
      } else {
        res.statusCode = 500;
        res.end(JSON.stringify({ message: `this test engine only answers /_ping, not ${req.url}` }));
      }
    });
    servers.push(engine as unknown as Server);
    await new Promise<void>((r) => engine.listen(sock, r));
    const path = binDir("bin-no-go", ["tmux"]);
    const r = await cli(["setup", "--yes"], { PATH: path, DOCKER_HOST: `unix://${sock}` }, { wrap: [unshareBin(), "-n"] });
    expect(r.status, r.stderr).toBe(1);
    const last = lines(r.stderr).at(-1);
    expect(last).toMatch(
      new RegExp(
        `^Go ${versions.goMinimum.replace(/\./g, "\\.")} or newer is not installed and pkgs\\.tailscale\\.com is unreachable \\(\\w+\\), so tailscale ${versions.tailscale.replace(/\./g, "\\.")} can be neither built nor downloaded; install Go \\(https://go\\.dev/dl\\) or connect to the internet\\.$`,
      ),
    );
    // Nothing half-downloaded is left in the cache.
    expect(spawnSync("sh", ["-c", `ls -A ${join(tmp, "cache", "bin")} 2>/dev/null`], { encoding: "utf8" }).stdout.trim()).toBe("");
  });
});
