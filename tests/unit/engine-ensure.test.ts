import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { containersConfPath, installPackages, isDebianLike, isRoot, waitForService } from "../../src/engine/ensure.ts";
import { OWN_PODMAN_SOCKET } from "../../src/paths.ts";

describe("the podman service's config", () => {
  it("is one per machine, beside its socket: another checkout's state dir does not change it", () => {
    const here = containersConfPath();
    const saved = process.env.WG3_STATE_DIR;
    process.env.WG3_STATE_DIR = "/tmp/another-checkout/.state";
    try {
      expect(containersConfPath()).toBe(here);
    } finally {
      if (saved === undefined) delete process.env.WG3_STATE_DIR;
      else process.env.WG3_STATE_DIR = saved;
    }
    expect(dirname(here)).toBe(dirname(OWN_PODMAN_SOCKET));
  });
});

describe.runIf(isRoot() && isDebianLike())("apt-get while another package manager holds the lock", () => {
  const saved = { PATH: process.env.PATH, wait: process.env.WG3_APT_LOCK_WAIT_S };
  let dir = "";
  afterEach(() => {
    process.env.PATH = saved.PATH;
    if (saved.wait === undefined) delete process.env.WG3_APT_LOCK_WAIT_S;
    else process.env.WG3_APT_LOCK_WAIT_S = saved.wait;
    rmSync(dir, { recursive: true, force: true });
  });

  /** A stand-in apt-get first on PATH: refuses with apt's lock message `locked` times, then succeeds; logs each call. */
  function fakeAptGet(locked: number, otherwise = "exit 0"): string {
    dir = mkdtempSync(join(tmpdir(), "wg3-apt-"));
    writeFileSync(
      join(dir, "apt-get"),
      `#!/bin/sh\necho "$*" >> ${dir}/calls\nn=$(wc -l < ${dir}/calls)\n` +
        `if [ "$n" -le ${locked} ]; then echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)"; exit 100; fi\n${otherwise}\n`,
    );
    chmodSync(join(dir, "apt-get"), 0o755);
    process.env.PATH = `${dir}:${saved.PATH}`;
    return join(dir, "calls");
  }

  it("waits for the lock and goes on", async () => {
    const calls = fakeAptGet(2);
    await installPackages({ yes: true }, ["tmux"]);
    expect(readFileSync(calls, "utf8").trim().split("\n")).toEqual([
      "update -q",
      "update -q",
      "update -q",
      "install -y -q --no-install-recommends tmux",
    ]);
  });

  it("gives up after its deadline in one sentence naming who holds the lock", async () => {
    fakeAptGet(100);
    process.env.WG3_APT_LOCK_WAIT_S = "1";
    await expect(installPackages({ yes: true }, ["tmux"])).rejects.toThrow(
      /^apt-get update waited 1 s for apt-get \(pid 4242\) to release the apt lock; let it finish \(or stop it\) and run setup again\.$/,
    );
  });

  it("fails at once on any other error (negative control: only the lock is waited for)", async () => {
    const calls = fakeAptGet(0, 'echo "E: Unable to locate package tmux"; exit 100');
    await expect(installPackages({ yes: true }, ["tmux"])).rejects.toThrow(/^apt-get update -q failed: E: Unable to locate package tmux$/);
    expect(readFileSync(calls, "utf8").trim().split("\n")).toHaveLength(1);
  });
});

describe("a running engine service that is slow to answer", () => {
  const servers: Server[] = [];
  afterEach(() => {
    for (const srv of servers.splice(0)) srv.close();
  });

  /** A socket that answers /_ping like podman, once `answering` is true. */
  function slowEngine(sock: string, state: { answering: boolean }): Promise<void> {
    const srv = createServer((_req, res) => {
      if (!state.answering) return; // hold the request, as a busy service does
      res.setHeader("server", "Libpod/4.3.1 (linux)");
      res.end("OK");
    });
    servers.push(srv);
    return new Promise((r) => srv.listen(sock, () => r()));
  }

  it("is waited for until it answers", async () => {
    const sock = join(mkdtempSync(join(tmpdir(), "wg3-eng-")), "slow.sock");
    const state = { answering: false };
    await slowEngine(sock, state);
    setTimeout(() => {
      state.answering = true;
    }, 1500).unref();
    const live = await waitForService({ dockerHost: `unix://${sock}`, source: "test" }, [4242], undefined, 20_000);
    expect(live).toMatchObject({ state: "alive", kind: "podman", version: "4.3.1" });
  });

  it("gives up after its deadline in one sentence naming the service's pid", async () => {
    const sock = join(mkdtempSync(join(tmpdir(), "wg3-eng-")), "hung.sock");
    await slowEngine(sock, { answering: false });
    await expect(waitForService({ dockerHost: `unix://${sock}`, source: "test" }, [4242], undefined, 1000)).rejects.toThrow(
      /^The podman API service \(pid 4242\) runs but has not answered on .*hung\.sock for 1 s \(last: dead, no answer in 5000 ms\); let the machine settle/,
    );
  });
});
