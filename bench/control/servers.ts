import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { binaryDir } from "../../src/binaries.ts";
import { adminCall } from "../../src/control/admin.ts";
import { ROOT } from "../../src/paths.ts";
import { render } from "../../src/recipe/template.ts";
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
  /** Delete a node as an administrator would (the "one leaves" scenario). */
  deleteNode(id: string): Promise<void>;
  /** Whether real tailscaled clients can use it (the null server only answers simulated nodes). */
  servesRealClients: boolean;
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

/**
 * recipe-3's headscale.yaml (the one the labs run), moved to loopback for the benchmark: plain
 * HTTP (the control protocol runs over Noise anyway), free ports, SQLite, keys and socket in
 * `dir`, quieter logs, and Headscale's tuning knobs when given.
 */
export function headscaleBenchConfig(
  dir: string,
  ports: { port: number; metrics: number; grpc: number; stun: number },
  tuning?: Record<string, string>,
): string {
  const template = readFileSync(join(ROOT, "recipes", "recipe-3", "headscale.yaml"), "utf8");
  const c = parseYaml(
    render(template, { nodes: { headscale: { ip: { roaming: "127.0.0.1" } } }, vars: { baseDomain: "bench.example.com" } }),
  );
  Object.assign(c, {
    server_url: `http://127.0.0.1:${ports.port}`,
    listen_addr: `127.0.0.1:${ports.port}`,
    metrics_listen_addr: `127.0.0.1:${ports.metrics}`,
    grpc_listen_addr: `127.0.0.1:${ports.grpc}`,
    tls_cert_path: "",
    tls_key_path: "",
    unix_socket: `${dir}/headscale.sock`,
  });
  c.noise.private_key_path = `${dir}/noise_private.key`;
  Object.assign(c.derp.server, {
    region_code: "bench",
    region_name: "bench embedded DERP",
    stun_listen_addr: `127.0.0.1:${ports.stun}`,
    private_key_path: `${dir}/derp_server_private.key`,
  });
  c.database.sqlite.path = `${dir}/db.sqlite`;
  c.log.level = "warn";
  if (tuning) c.tuning = tuning;
  return `# Written by bench/control/servers.ts from recipes/recipe-3/headscale.yaml; removed afterwards.\n${stringifyYaml(c)}`;
}

/** The ControlServer view of a supervised server process on 127.0.0.1:`port`. */
function handle(
  kind: string,
  version: string,
  port: number,
  authKey: string,
  p: {
    proc: { pid(): number; restart(): Promise<void> };
    stop: () => Promise<void>;
    log: string;
    deleteNode: (id: string) => Promise<void>;
    servesRealClients?: boolean;
  },
): ControlServer {
  return {
    deleteNode: p.deleteNode,
    servesRealClients: p.servesRealClients ?? true,
    kind,
    version,
    url: `http://127.0.0.1:${port}`,
    get pid() {
      return p.proc.pid();
    },
    authKey,
    stop: p.stop,
    restart: p.proc.restart,
    logTail: () => tail(p.log),
  };
}

export async function startHeadscale(o: { cpus?: string; tuning?: Record<string, string> } = {}): Promise<ControlServer> {
  const bin = headscaleBinary();
  if (!existsSync(bin)) throw new Error(`no cached Headscale at ${bin}: run ./start.ts setup first`);
  const dir = mkdtempSync(join(tmpdir(), "wg3-bench-headscale-"));
  const [port, metrics, grpc, stun] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const config = join(dir, "config.yaml");
  writeFileSync(config, headscaleBenchConfig(dir, { port, metrics, grpc, stun }, o.tuning));
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
    // Deleting a node over the REST API (one local HTTP request), as the builtin server's
    // admin socket does, so neither side pays a CLI start in the "one leaves" time.
    const apiKey = (await cli(["apikeys", "create", "--expiration", "24h"])).stdout.trim().split("\n").pop()!;
    const deleteNode = async (id: string) => {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/node/${id}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${apiKey}` },
      });
      if (!res.ok) throw new Error(`Headscale refused to delete node ${id}: ${res.status} ${(await res.text()).slice(0, 200)}`);
    };
    return handle("headscale", versions.headscale, port, key, { proc, stop, log, deleteNode });
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * The builtin control server (src/control/main.ts) as its own process under tsx, on
 * 127.0.0.1, plain HTTP, state and admin socket in a temporary directory; user and key through
 * its headscale-compatible CLI.
 */
export async function startBuiltin(o: { cpus?: string } = {}): Promise<ControlServer | { unavailable: string }> {
  const entry = join(ROOT, "src", "control", "main.ts");
  if (!existsSync(entry)) return { unavailable: "src/control/main.ts is missing" };
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
    const deleteNode = async (id: string) => {
      await adminCall(`${dir}/admin.sock`, "DELETE", `/nodes/${id}`);
    };
    return handle("builtin", version, port, key, { proc, stop, log, deleteNode });
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * The null server (bench/control/null-server.ts) as its own process under tsx, pinned like the
 * others: what the load generator achieves when the server does almost nothing.
 */
export async function startNull(o: { cpus?: string } = {}): Promise<ControlServer> {
  const loader = join(ROOT, "node_modules", "tsx", "dist", "loader.mjs");
  const entry = join(ROOT, "bench", "control", "null-server.ts");
  const dir = mkdtempSync(join(tmpdir(), "wg3-bench-null-"));
  const port = await freePort();
  const log = join(dir, "null.log");
  const proc = supervised(
    onCpus(o.cpus, [process.execPath, "--no-warnings", "--import", loader, entry, String(port), join(dir, "state.json")]),
    process.env,
    log,
    `the null server on 127.0.0.1:${port} to answer /health`,
    async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.ok,
  );
  const stop = async () => {
    await proc.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  const deleteNode = async (id: string) => {
    const res = await fetch(`http://127.0.0.1:${port}/bench/nodes/${id}`, { method: "DELETE" });
    if (!res.ok) throw new Error(`the null server did not delete node ${id}: ${res.status}`);
  };
  try {
    await proc.launch();
    return handle("null", "(bench)", port, "any", { proc, stop, log, deleteNode, servesRealClients: false });
  } catch (e) {
    await stop();
    throw e;
  }
}
