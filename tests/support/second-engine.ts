import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { probe } from "../../src/engine/connect.ts";
import { Engine } from "../../src/engine/engine.ts";
import { containersConfPath } from "../../src/engine/ensure.ts";
import { eventually } from "./eventually.ts";
import { TIMEOUT } from "./timeouts.ts";

/**
 * A second podman API service on this machine with storage, run state and network
 * configuration of its own (as another machine's engine would have), on its own socket.
 */
export class SecondPodman {
  private constructor(
    readonly dir: string,
    readonly dockerHost: string,
    private readonly service: ChildProcess,
  ) {}

  /** The podman flags that select this engine's storage (for `system reset` at the end). */
  private static flags(dir: string): string[] {
    return [
      "--root",
      join(dir, "storage"),
      "--runroot",
      join(dir, "run"),
      "--tmpdir",
      join(dir, "tmp"),
      "--network-config-dir",
      join(dir, "networks"),
    ];
  }

  static async start(): Promise<SecondPodman> {
    // Not under /tmp: overlay storage wants a real filesystem, and a tmpfs /tmp is common.
    const dir = mkdtempSync("/var/tmp/wg3-engine-");
    const sock = join(dir, "podman.sock");
    // The settings setup measured for this machine's podman (runc, cgroupfs, the rlimits it allows).
    const env = { ...process.env, CONTAINERS_CONF: containersConfPath() };
    const service = spawn("podman", [...SecondPodman.flags(dir), "system", "service", "--time=0", `unix://${sock}`], {
      stdio: "ignore",
      env,
    });
    const engine = new SecondPodman(dir, `unix://${sock}`, service);
    await eventually(
      "the second podman service answers /_ping",
      async () => (await probe({ dockerHost: engine.dockerHost, source: "test" })).state === "alive",
      {
        timeout: TIMEOUT.poll,
      },
    );
    return engine;
  }

  async engine(): Promise<Engine> {
    return Engine.of(await probe({ dockerHost: this.dockerHost, source: "test" }));
  }

  /** Stop the service and remove its storage (containers, images, networks and all). */
  async remove(): Promise<void> {
    this.service.kill("SIGTERM");
    await execa("podman", [...SecondPodman.flags(this.dir), "system", "reset", "--force"], {
      reject: false,
      env: { CONTAINERS_CONF: containersConfPath() },
    });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
