import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { cachedBinaries } from "../../src/binaries.ts";
import { parseConfig } from "../../src/control/config.ts";
import { ControlServer } from "../../src/control/server.ts";
import { makeLabTls } from "../../src/lab/tls.ts";
import { waitFor } from "../support/eventually.ts";

/**
 * Host-level fixtures for the builtin control server: the server in this process on loopback,
 * and real tailscaled processes (userspace networking, own state dirs and sockets), no
 * containers. Used by tests/integration/*.test.ts.
 */

/** The pinned tailscale build, or another one named by WG3_TAILSCALE_BIN_DIR (to try other client versions). */
export function tailscaleBins(): { tailscale: string; tailscaled: string } | undefined {
  const other = process.env.WG3_TAILSCALE_BIN_DIR;
  if (other) return { tailscale: join(other, "tailscale"), tailscaled: join(other, "tailscaled") };
  const b = cachedBinaries("tailscale");
  return b ? { tailscale: join(b.dir, "tailscale"), tailscaled: join(b.dir, "tailscaled") } : undefined;
}

/** A free TCP port on loopback (the server must know its URL before it starts). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * The builtin control server on 127.0.0.1 over TLS (a fresh lab CA), serving control and
 * DERP on one port, STUN on another. Clients trust the CA through SSL_CERT_FILE.
 */
export class HostControl {
  server!: ControlServer;
  readonly logs: string[] = [];
  caFile = "";
  constructor(
    readonly dir: string,
    public port = 0,
    public stunPort = 0,
    /** More config lines, e.g. `limits: { ping_interval: 1s }`. */
    readonly extraConfig: string[] = [],
  ) {}

  get socket(): string {
    return join(this.dir, "admin.sock");
  }

  async start(): Promise<this> {
    mkdirSync(this.dir, { recursive: true });
    if (!this.caFile) {
      const t = await makeLabTls("control", ["127.0.0.1"], ["localhost"]);
      writeFileSync(join(this.dir, "ca.pem"), t.caCert);
      writeFileSync(join(this.dir, "cert.pem"), t.cert);
      writeFileSync(join(this.dir, "key.pem"), t.key, { mode: 0o600 });
      this.caFile = join(this.dir, "ca.pem");
    }
    this.port ||= await freePort();
    this.stunPort ||= await freePort();
    const config = parseConfig(
      [
        `server_url: https://127.0.0.1:${this.port}`,
        `listen_addr: 127.0.0.1:${this.port}`,
        `tls_cert_path: ${join(this.dir, "cert.pem")}`,
        `tls_key_path: ${join(this.dir, "key.pem")}`,
        `state_dir: ${join(this.dir, "state")}`,
        `unix_socket: ${this.socket}`,
        "dns: { base_domain: tailnet.test }",
        `derp: { server: { enabled: true, region_id: 999, region_code: wg3, ipv4: 127.0.0.1, stun_listen_addr: "127.0.0.1:${this.stunPort}" } }`,
        ...this.extraConfig,
      ].join("\n"),
    );
    this.server = new ControlServer(config, (m) => this.logs.push(m));
    await this.server.start();
    return this;
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    await this.server?.close();
  }
}

export class HostTailscaled {
  proc: ChildProcess | undefined;
  readonly log: string[] = [];
  constructor(
    readonly name: string,
    readonly dir: string,
    readonly bins: { tailscale: string; tailscaled: string },
    readonly env: Record<string, string> = {},
  ) {
    mkdirSync(dir, { recursive: true });
  }

  get socket(): string {
    return join(this.dir, "tailscaled.sock");
  }

  async start(): Promise<void> {
    this.proc = spawn(
      this.bins.tailscaled,
      [
        "--tun=userspace-networking",
        `--state=${join(this.dir, "tailscaled.state")}`,
        `--statedir=${this.dir}`,
        `--socket=${this.socket}`,
        "--port=0",
        "--no-logs-no-support",
      ],
      { env: { ...process.env, TS_LOGS_DIR: this.dir, ...this.env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    for (const s of [this.proc.stdout!, this.proc.stderr!]) s.on("data", (d: Buffer) => this.log.push(d.toString()));
    await waitFor(
      `${this.name}'s tailscaled socket`,
      async () => (await this.cli(["status", "--json"])).stdout.includes("BackendState"),
      30_000,
    );
  }

  cli(args: string[], timeout = 60_000) {
    return execa(this.bins.tailscale, [`--socket=${this.socket}`, ...args], { reject: false, timeout, all: true });
  }

  async status(): Promise<{
    BackendState: string;
    Self: { TailscaleIPs: string[]; DNSName: string };
    Peer?: Record<string, { DNSName: string; HostName: string; Online: boolean; TailscaleIPs: string[] }>;
  }> {
    return JSON.parse((await this.cli(["status", "--json"])).stdout);
  }

  /** SIGTERM, and SIGKILL if it has not exited within 10 s (said on stderr, with the reason). */
  async stop(): Promise<void> {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc!.once("exit", r));
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => {
      process.stderr.write(`tailscaled ${this.name} ignored SIGTERM for 10 s; killing it. Last log:\n${this.tail(15)}\n`);
      this.proc?.kill("SIGKILL");
    }, 10_000);
    await exited;
    clearTimeout(timer);
  }

  tail(n = 30): string {
    return this.log.join("").split("\n").slice(-n).join("\n");
  }
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export { writeFileSync };

/**
 * A TCP relay in front of the control server whose cable can be cut: after `cut()` it forwards
 * nothing in either direction and closes nothing, as a pulled cable or a dead NAT mapping would.
 */
export class CuttableLink {
  private server: net.Server | undefined;
  private readonly pairs: [net.Socket, net.Socket][] = [];
  port = 0;

  constructor(readonly target: number) {}

  async start(): Promise<this> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target, "127.0.0.1");
      for (const s of [client, upstream]) s.on("error", () => {});
      client.pipe(upstream);
      upstream.pipe(client);
      this.pairs.push([client, upstream]);
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", () => r()));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  cut(): void {
    for (const [a, b] of this.pairs) {
      a.unpipe(b);
      b.unpipe(a);
      // Read and drop, so the kernel buffers never fill and nothing is ever sent on.
      a.on("data", () => {});
      b.on("data", () => {});
    }
  }

  async stop(): Promise<void> {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    await new Promise((r) => (this.server ? this.server.close(r) : r(undefined)));
  }
}
