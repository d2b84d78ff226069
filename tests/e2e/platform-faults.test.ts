/**
 * Ctrl-C during an image build, for real: a real engine, a real build, a real SIGINT to
 * ./start.ts. The build is made to take long by a copy of images/ (WG3_IMAGES_DIR) whose
 * Containerfile for one role ends in a slow step; its inputs hash, and so its tag, differ from
 * the real image's, and every other role is the same and reused. The slow step prints a marker
 * computed by the shell, so the test sends the signal only once the engine runs that step.
 *
 * Asserted: a non-zero exit with one sentence, no image under the role's new tag (also after
 * the engine let go of the build), no container left (API-visible or podman build container),
 * and for a lab start no labelled network either.
 */
import { type ChildProcess, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine/engine.ts";
import { ensureEngine } from "../../src/engine/ensure.ts";
import { LABEL } from "../../src/engine/labels.ts";
import { type ImageRole, imageRef } from "../../src/images/build.ts";
import { imagesDir } from "../../src/paths.ts";
import { eventually } from "../support/eventually.ts";
import { type RunningStartTs, spawnStartTs } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

const MARKER = "wg3-slow-step-running-42";
/** From an empty cache, setup reaches headscale's go install after tailscale's. */
const GO_INSTALL_STARTS = 240_000;
let engine: Engine;
const dirs: string[] = [];
const children: ChildProcess[] = [];

/** A copy of images/ where `role`'s Containerfile ends in a step that runs until interrupted. */
function slowImagesDir(role: ImageRole): { dir: string; ref: string } {
  const dir = mkdtempSync(join(tmpdir(), "wg3-slow-images-"));
  dirs.push(dir);
  cpSync(imagesDir, dir, { recursive: true });
  const file = join(dir, role, "Containerfile");
  // The echo prints 42 only when the shell runs it: the step's own text in the build log says $((6*7)).
  // 25 s stands for a slow apt-get: podman (4.3) runs the current step to its end after the
  // client hangs up, and the CLI waits for that before it exits.
  writeFileSync(file, `${readFileSync(file, "utf8")}\nRUN echo "wg3-slow-step-running-$((6*7))" && sleep 25\n`);
  const saved = process.env.WG3_IMAGES_DIR;
  process.env.WG3_IMAGES_DIR = dir;
  try {
    return { dir, ref: imageRef(role) };
  } finally {
    if (saved === undefined) delete process.env.WG3_IMAGES_DIR;
    else process.env.WG3_IMAGES_DIR = saved;
  }
}

/** ./start.ts, verbose, with images from `imagesDirOverride`; killed in afterAll if still running. */
function startCli(args: string[], imagesDirOverride: string, env: Record<string, string> = {}): RunningStartTs {
  const run = spawnStartTs(args, {
    env: { WG3_IMAGES_DIR: imagesDirOverride, WG3_VERBOSE: "1", DOCKER_HOST: engine.dockerHost, ...env },
    timeoutMs: Number.POSITIVE_INFINITY,
  });
  children.push(run.child);
  return run;
}

/** Poll `cond` every 200 ms at most; on timeout, say what the CLI printed last. */
function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeout: number, run: RunningStartTs): Promise<boolean> {
  return eventually(what, cond, { timeout, interval: 200, seen: () => `last output:\n${run.output().slice(-2000)}` });
}

/**
 * Containers this file could leave behind: build containers, and API-visible ones of no lab or
 * of its own lab "ctrlc" (other files' labs come and go beside it).
 */
async function containerIds(): Promise<Set<string>> {
  const api = (await engine.listContainers()).filter((c) => [undefined, "ctrlc"].includes(c.labels[LABEL.lab])).map((c) => c.id);
  return new Set([...api, ...(await engine.buildContainers())]);
}

/** Interrupt `args` once the slow step of `role` runs; return the CLI's exit and output. */
async function interruptBuild(args: string[], role: ImageRole) {
  const { dir, ref } = slowImagesDir(role);
  expect(ref, "the slow copy must get its own tag").not.toBe(imageRef(role));
  expect(await engine.imageExists(ref), `${ref} must not exist before the test`).toBe(false);
  const before = await containerIds();

  const run = startCli(args, dir);
  let exitedEarly = false;
  void run.exited.then(() => {
    exitedEarly = true;
  });
  await waitFor(`the slow build step of ${role} to run`, () => exitedEarly || run.output().includes(MARKER), TIMEOUT.build, run);
  expect(exitedEarly, `./start.ts ${args.join(" ")} ended before the slow step:\n${run.output().slice(-2000)}`).toBe(false);
  // Negative control: at this moment the build really is in progress and holds a container.
  expect((await containerIds()).size, "a build step runs in a container").toBeGreaterThan(before.size);

  run.child.kill("SIGINT");
  const exit = await Promise.race([
    run.exited,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no exit within 180 s of SIGINT:\n${run.output().slice(-2000)}`)), 180_000),
    ),
  ]);
  const after = await containerIds();
  return { exit, output: run.output(), ref, before, after };
}

function lastLine(output: string): string {
  return output.trim().split("\n").at(-1) ?? "";
}

describe("platform faults: Ctrl-C during an image build", () => {
  beforeAll(async () => {
    engine = await ensureEngine();
  });

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    for (const role of ["webserver", "wg-peer"] as const) {
      for (const d of dirs) {
        process.env.WG3_IMAGES_DIR = d;
        const ref = imageRef(role);
        delete process.env.WG3_IMAGES_DIR;
        if (ref !== imageRef(role)) await engine.removeImage(ref, true);
      }
    }
    await engine.removeLabelled({ lab: "ctrlc" }).catch(() => {});
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("./start.ts setup --yes: exits 130 with one sentence, tags nothing, leaves no container", async () => {
    const r = await interruptBuild(["setup", "--yes"], "webserver");
    expect(r.exit, r.output.slice(-2000)).toEqual({ code: 130, signal: null });
    expect(lastLine(r.output)).toBe("Interrupted while building image webserver; nothing half-built was tagged.");
    expect(await engine.imageExists(r.ref), `${r.ref} must not be tagged`).toBe(false);
    expect(
      [...r.after].filter((id) => !r.before.has(id)),
      "containers left behind",
    ).toEqual([]);
    // The real webserver image is untouched.
    expect(await engine.imageExists(imageRef("webserver"))).toBe(true);
  });

  it("a lab start (recipe-0) interrupted while it builds: exits 130, no image, no container, no network", async () => {
    const r = await interruptBuild(["recipe-0", "--no-attach", "--lab", "ctrlc"], "wg-peer");
    expect(r.exit, r.output.slice(-2000)).toEqual({ code: 130, signal: null });
    expect(lastLine(r.output)).toBe("Interrupted while building image wg-peer; nothing half-built was tagged.");
    expect(await engine.imageExists(r.ref), `${r.ref} must not be tagged`).toBe(false);
    expect(
      [...r.after].filter((id) => !r.before.has(id)),
      "containers left behind",
    ).toEqual([]);
    expect(await engine.listContainers({ lab: "ctrlc" })).toEqual([]);
    expect(await engine.listNetworks({ lab: "ctrlc" })).toEqual([]);
  });
});

describe("platform faults: Ctrl-C during go install", () => {
  const cache = mkdtempSync(join(tmpdir(), "wg3-cache-"));
  const goHeadscale = "go install .*github.com/juanfont/headscale/cmd/headscale@";
  const goRunning = () => spawnSync("pgrep", ["-f", goHeadscale]).status === 0;

  afterAll(() => {
    spawnSync("pkill", ["-f", goHeadscale]);
    rmSync(cache, { recursive: true, force: true });
  });

  it("./start.ts setup --yes into an empty cache: exits 130 with one sentence, no half-built binaries, no go left running", async () => {
    engine ??= await ensureEngine();
    const run = startCli(["setup", "--yes"], imagesDir, { WG3_CACHE_DIR: cache });
    // Signal only once the headscale build really runs (tailscale's comes first).
    await waitFor("go install headscale running", goRunning, GO_INSTALL_STARTS, run);
    run.child.kill("SIGINT");
    const exit = await run.exited;
    expect(exit, run.output().slice(-2000)).toEqual({ code: 130, signal: null });
    expect(lastLine(run.output())).toMatch(/^Interrupted while building headscale v[\d.]+; the cache holds no half-built copy\.$/);
    await waitFor("go install headscale gone", () => !goRunning(), TIMEOUT.poll, run);
    const left = readdirSync(join(cache, "bin"));
    expect(left.filter((d) => d.startsWith("headscale") || d.includes(".partial-"))).toEqual([]);
  });
});
