import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline/promises";
import { execa } from "execa";
import { UserError } from "../errors.ts";
import { OWN_PODMAN_SOCKET } from "../paths.ts";
import { type Progress, stepper } from "../ui/progress.ts";
import { describeNoEngine, type EngineEndpoint, findEngine, type Probe, probe } from "./connect.ts";
import { Engine } from "./engine.ts";

/** Distro packages `setup` installs: the engine, its runtime, and the host tools labs use. */
export const SETUP_PACKAGES = [
  "podman",
  "runc",
  "netavark",
  "aardvark-dns",
  "iptables",
  "debootstrap",
  "tmux",
  "openssl",
  "ca-certificates",
];

/**
 * Debian's podman only suggests netavark; without it podman falls back to CNI, whose bridges
 * are not isolated from each other (`-o isolate` is netavark's), so the labs need netavark.
 */
const NETAVARK_PATHS = ["/usr/lib/podman/netavark", "/usr/libexec/podman/netavark"];
export function hasNetavark(): boolean {
  return NETAVARK_PATHS.some((p) => existsSync(p));
}

/**
 * Podman settings measured to work on hybrid-cgroup hosts (Debian 12, podman 4.3):
 * crun fails there, runc with cgroupfs works; the default rlimits are refused.
 */
export const CONTAINERS_CONF = `# Written by ./start.ts setup; used through CONTAINERS_CONF by the podman service it starts.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
`;

/**
 * Beside the service's socket, not in a checkout: the podman service is one per machine, and a
 * second checkout (a CI clone, a worktree) with its own copy would restart it under every lab.
 */
export function containersConfPath(): string {
  return join(dirname(OWN_PODMAN_SOCKET), "containers.conf");
}

export function podmanServiceLog(): string {
  return join(dirname(OWN_PODMAN_SOCKET), "podman-service.log");
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

export function isDebianLike(): boolean {
  return existsSync("/etc/debian_version");
}

export async function which(cmd: string): Promise<boolean> {
  return (await execa("sh", ["-c", `command -v ${cmd}`], { reject: false })).exitCode === 0;
}

/** The project's containers.conf: CONTAINERS_CONF, plus netavark as the network backend when installed. */
export function containersConfText(): string {
  return hasNetavark() ? `${CONTAINERS_CONF}\n[network]\nnetwork_backend = "netavark"\n` : CONTAINERS_CONF;
}

/** Write the project's containers.conf if it differs; true when it changed. */
export function writeContainersConf(): boolean {
  const path = containersConfPath();
  mkdirSync(dirname(path), { recursive: true });
  const text = containersConfText();
  if (existsSync(path) && readFileSync(path, "utf8") === text) return false;
  writeFileSync(path, text);
  return true;
}

/**
 * Start `podman system service` on our own socket, fully detached (own session, output to a
 * log file) so it never holds a terminal or a CI step open. Poll until the API answers.
 */
export async function startPodmanService(progress?: Progress): Promise<Probe> {
  writeContainersConf();
  const conf = containersConfPath();
  mkdirSync(dirname(OWN_PODMAN_SOCKET), { recursive: true });
  const log = openSync(podmanServiceLog(), "a");
  const child = spawn("podman", ["system", "service", "--time=0", `unix://${OWN_PODMAN_SOCKET}`], {
    detached: true,
    // Not the caller's folder: the service outlives it, and once a checkout it was started from
    // is deleted, every container start fails ("write child: broken pipe").
    cwd: "/",
    stdio: ["ignore", log, log],
    env: { ...process.env, CONTAINERS_CONF: conf },
  });
  child.unref();
  const endpoint = ownEndpoint();
  const deadline = Date.now() + 30_000;
  let last: Probe = { endpoint, state: "absent" };
  while (Date.now() < deadline) {
    last = await probe(endpoint, 2000);
    if (last.state === "alive") return last;
    if (child.exitCode !== null) break;
    progress?.detail(`waiting for ${OWN_PODMAN_SOCKET}: ${last.state} ${last.reason ?? ""}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const tail = existsSync(podmanServiceLog()) ? readFileSync(podmanServiceLog(), "utf8").trim().split("\n").slice(-5).join("\n") : "";
  throw new UserError(
    `podman system service did not answer on ${OWN_PODMAN_SOCKET} within 30 s (last: ${last.state}${last.reason ? `, ${last.reason}` : ""}).`,
    1,
    tail,
  );
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} [Y/n] `);
    return !/^n/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

export interface EnsureOptions {
  /** Install packages without asking (--yes). A non-TTY stdin also skips the question. */
  yes?: boolean;
  /** May we install or start things at all? (doctor: no) */
  allowSetup?: boolean;
  progress?: Progress;
}

/** Install the distro packages the harness needs (Debian/Ubuntu, root only). */
export async function installPackages(opts: EnsureOptions, packages = SETUP_PACKAGES): Promise<void> {
  if (!isRoot()) {
    throw new UserError(
      `Installing ${packages.join(", ")} needs root: run \`sudo ./start.ts setup\`, or install podman (or Docker) yourself.`,
    );
  }
  if (!isDebianLike()) {
    throw new UserError(
      `./start.ts setup knows Debian and Ubuntu only; install podman and runc (or Docker Engine) with your distribution's tools.`,
    );
  }
  const ask = !opts.yes && process.stdin.isTTY;
  if (ask && !(await confirm(`setup will run apt-get update and install: ${packages.join(" ")}. Proceed?`))) {
    throw new UserError("Setup declined; nothing was installed.");
  }
  const step = stepper(opts.progress);
  await step("apt-get update", (note) => aptGet(["update", "-q"], note));
  await step(`apt-get install ${packages.join(" ")}`, (note) =>
    aptGet(["install", "-y", "-q", "--no-install-recommends", ...packages], note),
  );
}

/**
 * apt-get, waiting while another package manager holds the apt lock: a machine fresh from
 * boot often runs unattended-upgrades, and apt-get fails at once instead of queueing.
 */
async function aptGet(args: string[], note: (text: string) => void): Promise<void> {
  const waitS = Number(process.env.WG3_APT_LOCK_WAIT_S ?? 600);
  const deadline = Date.now() + waitS * 1000;
  for (let pause = 500; ; pause = Math.min(pause * 2, 5000)) {
    const r = await execa("apt-get", args, { reject: false, all: true, env: { DEBIAN_FRONTEND: "noninteractive" } });
    if (r.exitCode === 0) return;
    const text = String(r.all).trim();
    if (!/Could not get lock|Unable to lock/.test(text))
      throw new UserError(`apt-get ${args.join(" ")} failed: ${text.split("\n").slice(-3).join(" ")}`);
    const by = /held by process (\d+)(?: \(([^)]+)\))?/.exec(text);
    const holder = by ? `${by[2] ?? "a process"} (pid ${by[1]})` : "another package manager";
    if (Date.now() + pause > deadline)
      throw new UserError(
        `apt-get ${args[0]} waited ${waitS} s for ${holder} to release the apt lock; let it finish (or stop it) and run setup again.`,
      );
    note(`${holder} holds the apt lock; waiting`);
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

/**
 * Give back a live engine: DOCKER_HOST, a running podman or Docker socket, or (root on
 * Debian/Ubuntu, allowSetup) podman installed and started by us.
 */
export async function ensureEngine(opts: EnsureOptions = {}): Promise<Engine> {
  const found = await findEngine();
  if (found.live && found.live.endpoint.dockerHost === `unix://${OWN_PODMAN_SOCKET}` && opts.allowSetup && isRoot()) {
    // Our own service: bring it up to date when setup has learnt something since it started
    // (a package to add, a setting in containers.conf), then restart it on the new config.
    if (!hasNetavark() && isDebianLike()) await installPackages(opts, ["netavark", "aardvark-dns"]);
    if (writeContainersConf()) {
      const step = stepper(opts.progress);
      const live = await step("restart the podman API service on the updated containers.conf", async () => {
        await stopOwnPodmanService();
        return startPodmanService(opts.progress);
      });
      return Engine.of(live);
    }
  }
  if (found.live) return Engine.of(found.live);
  if (process.env.DOCKER_HOST) throw new UserError(describeNoEngine(found.probes));
  // Ours is running but slow to answer (a busy machine): wait for it, never start a second one,
  // which would take the socket over and orphan the first with every stream it serves.
  const running = await ownServicePids();
  if (running.length) return Engine.of(await waitForService(ownEndpoint(), running, opts.progress));
  const hasPodman = await which("podman");
  if (!isRoot()) {
    // Nothing can be installed or started without root: say what is there and what to run.
    if (found.probes.some((p) => p.state === "dead")) throw new UserError(describeNoEngine(found.probes));
    if (hasPodman) {
      throw new UserError(
        "podman is installed but no API socket answers; run `sudo ./start.ts setup` to start one (the labs need rootful podman).",
      );
    }
    throw new UserError(
      "No container engine is reachable: install podman and runc (or Docker Engine), or run `sudo ./start.ts setup` on Debian/Ubuntu.",
    );
  }
  const dead = found.probes.find((p) => p.state === "dead" && !p.endpoint.dockerHost.includes(OWN_PODMAN_SOCKET));
  if (dead && !hasPodman) throw new UserError(describeNoEngine(found.probes));

  if (!hasPodman || (!hasNetavark() && isDebianLike() && opts.allowSetup)) {
    if (!opts.allowSetup)
      throw new UserError("No container engine is reachable: run `sudo ./start.ts setup` (./start.ts doctor tells what is missing).");
    if (!isDebianLike()) {
      throw new UserError(
        "No container engine is reachable: install podman and runc (or Docker Engine) with your distribution's tools, then run ./start.ts setup.",
      );
    }
    opts.progress?.info(
      hasPodman
        ? "podman is here but netavark is not: setup installs it (the labs need isolated bridges) and starts a podman API service."
        : "No container engine found: setup installs podman + runc from Debian's packages and starts a podman API service.",
    );
    await installPackages(opts);
  }
  const step = stepper(opts.progress);
  const live = await step(`start podman API service on ${OWN_PODMAN_SOCKET}`, () => startPodmanService(opts.progress));
  return Engine.of(live);
}

const OWN_SERVICE_PATTERN = `podman system service --time=0 unix://${OWN_PODMAN_SOCKET}`;

function ownEndpoint() {
  return { dockerHost: `unix://${OWN_PODMAN_SOCKET}`, source: "podman service started by ./start.ts setup" };
}

/** The processes of the podman service we start (any checkout's). */
async function ownServicePids(): Promise<number[]> {
  const r = await execa("pgrep", ["-f", OWN_SERVICE_PATTERN], { reject: false });
  return r.stdout.split("\n").filter(Boolean).map(Number);
}

/** Poll a running engine service until it answers, within `timeoutMs`; one sentence if it never does. */
export async function waitForService(endpoint: EngineEndpoint, pids: number[], progress?: Progress, timeoutMs = 60_000): Promise<Probe> {
  const deadline = Date.now() + timeoutMs;
  let last: Probe = { endpoint, state: "absent" };
  const step = stepper(progress);
  return step(`wait for the running podman API service (pid ${pids.join(", ")}) to answer`, async (note) => {
    while (Date.now() < deadline) {
      last = await probe(endpoint, 5000);
      if (last.state === "alive") return last;
      note(`${last.state}${last.reason ? `: ${last.reason}` : ""}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new UserError(
      `The podman API service (pid ${pids.join(", ")}) runs but has not answered on ${endpoint.dockerHost.replace("unix://", "")} for ${timeoutMs / 1000} s (last: ${last.state}${last.reason ? `, ${last.reason}` : ""}); let the machine settle, or stop it (pkill -f '${OWN_SERVICE_PATTERN}') and run ./start.ts setup.`,
    );
  });
}

/** Stop the podman service we started, and wait (bounded) until it has exited. */
export async function stopOwnPodmanService(): Promise<boolean> {
  const pattern = OWN_SERVICE_PATTERN;
  const r = await execa("pkill", ["-f", pattern], { reject: false });
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && (await execa("pgrep", ["-f", pattern], { reject: false })).exitCode === 0) {
    await new Promise((res) => setTimeout(res, 100));
  }
  return r.exitCode === 0;
}
