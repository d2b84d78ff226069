import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { binaryDir } from "../../src/binaries.ts";
import { ROOT } from "../../src/paths.ts";
import { versions } from "../../src/versions.ts";
import { eventually } from "../../tests/support/eventually.ts";
import { freePort } from "../../tests/support/ports.ts";
import { TIMEOUT } from "../../tests/support/timeouts.ts";
import { onCpus } from "./proc.ts";

/** The capability version the repository's client speaks (src/control/client.ts). */
const CLIENT_CAPVER = 138;

const run = promisify(execFile);

/** A control server running on this host's loopback, for the load generator. */
export interface ControlServer {
  /** "headscale" or "builtin". */
  kind: string;
  version: string;
  /** Base URL clients use (http://127.0.0.1:PORT). */
  url: string;
  /** The process to measure (CPU seconds, peak RSS). */
  pid: number;
  /** A reusable pre-auth key good for every simulated node. Never print it. */
  authKey: string;
  /** Stop the server and remove its temporary state. */
  stop(): Promise<void>;
  /** Stop the server process and start it again on the same config, state and port. */
  restart(): Promise<void>;
  /** The server's last log lines (for error messages). */
  logTail(): string;
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, "utf8").trim().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await gone;
  clearTimeout(t);
}

/** A server process that can be restarted in place: same command, log, config, state and port. */
function supervised(argv: string[], env: NodeJS.ProcessEnv, log: string, what: string, ready: () => Promise<boolean | undefined>) {
  let child: ChildProcess | undefined;
  const launch = async () => {
    const fd = openSync(log, "a");
    const c = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", fd, fd], env, cwd: ROOT });
    child = c;
    await eventually(
      what,
      async () => {
        if (c.exitCode !== null) throw new Error(`it exited ${c.exitCode}: ${tail(log)}`);
        return ready();
      },
      { timeout: TIMEOUT.poll },
    );
  };
  const stop = async () => {
    if (child) await stopChild(child);
  };
  return {
    launch,
    stop,
    pid: () => child!.pid!,
    restart: async () => {
      await stop();
      await launch();
    },
  };
}

export function headscaleBinary(): string {
  return join(binaryDir("headscale"), "headscale");
}

/**
 * Headscale from the cached pinned binary, on 127.0.0.1 only, plain HTTP (the control protocol
 * runs over Noise anyway), SQLite and everything else in a temporary directory.
 */
/**
 * Headscale 0.29's own knobs for a burst of changes (config-example.yaml, tuning:): shorter
 * batching delays than the defaults (800 ms change batching, 500 ms node-store batches), and
 * as many map workers as the CPUs it may use. What a maintainer would try first for a mass join.
 */
export const HEADSCALE_TUNED = (cpus: number) => ({
  batch_change_delay: "100ms",
  node_store_batch_timeout: "100ms",
  batcher_workers: String(Math.max(1, cpus)),
});

export async function startHeadscale(o: { cpus?: string; tuning?: Record<string, string> } = {}): Promise<ControlServer> {
  const bin = headscaleBinary();
  if (!existsSync(bin)) throw new Error(`no cached Headscale at ${bin}: run ./start.ts setup first`);
  const dir = mkdtempSync(join(tmpdir(), "wg3-bench-headscale-"));
  const [port, metrics, grpc, stun] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const config = join(dir, "config.yaml");
  writeFileSync(
    config,
    `# Written by bench/control/servers.ts for the control-plane benchmark; removed afterwards.
server_url: http://127.0.0.1:${port}
listen_addr: 127.0.0.1:${port}
metrics_listen_addr: 127.0.0.1:${metrics}
grpc_listen_addr: 127.0.0.1:${grpc}
grpc_allow_insecure: false
disable_check_updates: true
noise:
  private_key_path: ${dir}/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: true
    region_id: 999
    region_code: "bench"
    region_name: "bench embedded DERP"
    verify_clients: true
    stun_listen_addr: "127.0.0.1:${stun}"
    private_key_path: ${dir}/derp_server_private.key
    automatically_add_embedded_derp_region: true
    ipv4: 127.0.0.1
  urls: []
  paths: []
  auto_update_enabled: false
database:
  type: sqlite
  sqlite:
    path: ${dir}/db.sqlite
    write_ahead_log: true
${
  o.tuning
    ? `tuning:\n${Object.entries(o.tuning)
        .map(([k, v]) => `  ${k}: ${v}`)
        .join("\n")}\n`
    : ""
}log:
  level: warn
  format: text
policy:
  mode: file
  path: ""
dns:
  magic_dns: true
  base_domain: bench.example.com
  override_local_dns: false
  nameservers:
    global: []
unix_socket: ${dir}/headscale.sock
unix_socket_permission: "0770"
logtail:
  enabled: false
`,
  );
  const log = join(dir, "headscale.log");
  const env = { ...process.env, NO_COLOR: "1" };
  const proc = supervised(
    onCpus(o.cpus, [bin, "serve", "--config", config]),
    env,
    log,
    `Headscale on 127.0.0.1:${port} to answer /health`,
    async () => {
      const r = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
      return r?.ok;
    },
  );
  const cli = (args: string[]) => run(bin, [...args, "--config", config], { env });
  const stop = async () => {
    await proc.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await proc.launch();
    await cli(["users", "create", "bench"]);
    const users = JSON.parse((await cli(["users", "list", "-o", "json"])).stdout) as { id: number; name: string }[];
    const id = users.find((u) => u.name === "bench")?.id ?? 1;
    const key = (await cli(["preauthkeys", "create", "-u", String(id), "--reusable", "--expiration", "24h"])).stdout
      .trim()
      .split("\n")
      .pop()!;
    return {
      kind: "headscale",
      version: versions.headscale,
      url: `http://127.0.0.1:${port}`,
      get pid() {
        return proc.pid();
      },
      authKey: key,
      stop,
      restart: proc.restart,
      logTail: () => tail(log),
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * The builtin control server (src/control/main.ts, issue 6) as its own process under tsx, on
 * 127.0.0.1, plain HTTP, state and admin socket in a temporary directory; user and key through
 * its headscale-compatible CLI.
 */
export async function startBuiltin(o: { cpus?: string } = {}): Promise<ControlServer | { unavailable: string }> {
  const entry = join(ROOT, "src", "control", "main.ts");
  if (!existsSync(entry)) return { unavailable: "src/control/main.ts does not exist yet (issue 6)" };
  const loader = join(ROOT, "node_modules", "tsx", "dist", "loader.mjs");
  const node = (args: string[]) => [process.execPath, ["--no-warnings", "--import", loader, entry, ...args]] as const;
  const dir = mkdtempSync(join(tmpdir(), "wg3-bench-builtin-"));
  const [port, stun] = [await freePort(), await freePort()];
  const config = join(dir, "config.yaml");
  writeFileSync(
    config,
    `# Written by bench/control/servers.ts for the control-plane benchmark; removed afterwards.
server_url: http://127.0.0.1:${port}
listen_addr: 127.0.0.1:${port}
state_dir: ${dir}/state
unix_socket: ${dir}/admin.sock
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
dns:
  base_domain: bench.example.com
derp:
  server:
    enabled: true
    region_id: 999
    stun_listen_addr: 127.0.0.1:${stun}
    ipv4: 127.0.0.1
`,
  );
  const log = join(dir, "control.log");
  const proc = supervised(
    onCpus(o.cpus, node(["serve", "--config", config]).flat()),
    process.env,
    log,
    `the builtin control server on 127.0.0.1:${port} to answer /key`,
    async () => {
      const r = await fetch(`http://127.0.0.1:${port}/key?v=${CLIENT_CAPVER}`).catch(() => undefined);
      return r?.ok;
    },
  );
  const cli = async (words: string[]) => {
    const [b, a] = node(["cli", ...words, "-c", config]);
    return run(b, [...a], { cwd: ROOT });
  };
  const stop = async () => {
    await proc.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await proc.launch();
    await cli(["users", "create", "bench"]);
    const users = JSON.parse((await cli(["users", "list", "-o", "json"])).stdout) as { id: number | string; name: string }[];
    const id = users.find((u) => u.name === "bench")?.id ?? 1;
    const key = (await cli(["preauthkeys", "create", "-u", String(id), "--reusable", "-e", "24h"])).stdout.trim().split("\n").pop()!;
    const version = `(${(await cli(["version"])).stdout.trim().split(" ")[0]})`;
    return {
      kind: "builtin",
      version,
      url: `http://127.0.0.1:${port}`,
      get pid() {
        return proc.pid();
      },
      authKey: key,
      stop,
      restart: proc.restart,
      logTail: () => tail(log),
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
