import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../../integration/tailscaled-host.ts";
import { eventually } from "../../support/eventually.ts";
import { TIMEOUT } from "../../support/timeouts.ts";

/** The control server as its own process (src/control/main.ts under tsx), plain HTTP on loopback. */
export interface Server {
  proc: ChildProcess;
  url: string;
  socket: string;
  exited: Promise<NodeJS.Signals | null>;
}

export async function serve(dir: string, crashAt = 0, extra: string[] = []): Promise<Server> {
  const port = await freePort();
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, "admin.sock");
  const config = join(dir, "config.yaml");
  writeFileSync(
    config,
    [
      `server_url: http://127.0.0.1:${port}`,
      `listen_addr: 127.0.0.1:${port}`,
      `state_dir: ${join(dir, "state")}`,
      `unix_socket: ${socket}`,
      "dns: { base_domain: tailnet.test }",
      'derp: { server: { enabled: true, stun_listen_addr: "" } }',
      ...extra,
    ].join("\n"),
  );
  const env = { ...process.env, WG3_CONTROL_CRASH_AT_STEP: String(crashAt) };
  const proc = spawn(process.execPath, ["--import", "tsx", "src/control/main.ts", "serve", "--config", config], { env, stdio: "ignore" });
  const exited = new Promise<NodeJS.Signals | null>((r) => proc.once("exit", (_c, sig) => r(sig)));
  const url = `http://127.0.0.1:${port}`;
  // A new Node process transpiling the server through tsx: seconds on a quiet machine, more on a busy one.
  await eventually("the control server answers /health", async () => (await fetch(`${url}/health`)).ok, { timeout: TIMEOUT.poll });
  return { proc, url, socket, exited };
}

export async function stop(s: Server): Promise<void> {
  if (s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill("SIGTERM");
  await s.exited;
}

/** Resident memory of a process, in MiB (Linux). */
export function rssMiB(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  return kb / 1024;
}
