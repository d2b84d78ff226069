import { PassThrough } from "node:stream";
import type Docker from "dockerode";
import { dockerodeFor, type EngineKind } from "./connect.ts";
import { labelFilter } from "./labels.ts";

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  env?: Record<string, string>;
  user?: string;
  workdir?: string;
  /** Abort after this many ms (the process inside keeps running; callers use `timeout` for that). */
  timeoutMs?: number;
}

/** One connection to a Docker-API engine (podman or Docker), with the few verbs the harness needs. */
export class Engine {
  readonly docker: Docker;

  constructor(
    readonly dockerHost: string,
    readonly kind: EngineKind,
    readonly version: string,
  ) {
    this.docker = dockerodeFor(dockerHost);
  }

  /** The CLI a person would type on this host for the same engine (podman, or docker -H HOST). */
  cliArgs(): string[] {
    return this.kind === "podman" ? ["podman"] : ["docker", "-H", this.dockerHost];
  }

  /** The last lines a container logged (stdout and stderr), or "" when there are none. */
  async logTail(container: string, lines = 15): Promise<string> {
    try {
      const buf = (await this.docker.getContainer(container).logs({ stdout: true, stderr: true, tail: lines })) as unknown as Buffer;
      // Logs of a container without a TTY are multiplexed: 8-byte frame headers before each chunk.
      if (buf[0] !== 1 && buf[0] !== 2) return buf.toString("utf8").trim();
      const out: string[] = [];
      for (let i = 0; i + 8 <= buf.length; ) {
        const len = buf.readUInt32BE(i + 4);
        out.push(buf.subarray(i + 8, i + 8 + len).toString("utf8"));
        i += 8 + len;
      }
      return out.join("").trim();
    } catch {
      return "";
    }
  }

  /** Run a command in a running container and collect its output and exit code. */
  async exec(container: string, cmd: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const c = this.docker.getContainer(container);
    const exec = await c.exec({
      Cmd: cmd,
      AttachStdout: true,
      AttachStderr: true,
      Env: opts.env ? Object.entries(opts.env).map(([k, v]) => `${k}=${v}`) : undefined,
      User: opts.user,
      WorkingDir: opts.workdir,
    });
    const stream = await exec.start({ hijack: true, stdin: false });
    const out = new PassThrough();
    const err = new PassThrough();
    const chunks = { out: [] as Buffer[], err: [] as Buffer[] };
    out.on("data", (b: Buffer) => chunks.out.push(b));
    err.on("data", (b: Buffer) => chunks.err.push(b));
    this.docker.modem.demuxStream(stream, out, err);
    await new Promise<void>((resolve, reject) => {
      const timer = opts.timeoutMs
        ? setTimeout(() => {
            stream.destroy();
            reject(new Error(`exec ${cmd.join(" ")} in ${container} took longer than ${opts.timeoutMs} ms`));
          }, opts.timeoutMs)
        : undefined;
      stream.on("end", () => {
        if (timer) clearTimeout(timer);
        resolve();
      });
      stream.on("close", () => {
        if (timer) clearTimeout(timer);
        resolve();
      });
      stream.on("error", reject);
    });
    // The stream can end a moment before the engine records the exit code.
    let info = await exec.inspect();
    for (let i = 0; info.Running && i < 100; i++) {
      await new Promise((r) => setTimeout(r, 20));
      info = await exec.inspect();
    }
    return {
      exitCode: info.ExitCode ?? -1,
      stdout: Buffer.concat(chunks.out).toString("utf8"),
      stderr: Buffer.concat(chunks.err).toString("utf8"),
    };
  }

  /** exec that throws with the command's stderr when it exits non-zero. */
  async run(container: string, cmd: string[], opts: ExecOptions = {}): Promise<string> {
    const r = await this.exec(container, cmd, opts);
    if (r.exitCode !== 0) {
      throw new Error(`\`${cmd.join(" ")}\` in ${container} exited ${r.exitCode}: ${(r.stderr || r.stdout).trim().slice(-800)}`);
    }
    return r.stdout;
  }

  async sh(container: string, script: string, opts: ExecOptions = {}): Promise<ExecResult> {
    return this.exec(container, ["sh", "-c", script], opts);
  }

  async listContainers(match: Parameters<typeof labelFilter>[0] = {}): Promise<Docker.ContainerInfo[]> {
    return this.docker.listContainers({ all: true, filters: labelFilter(match) });
  }

  async listNetworks(match: Parameters<typeof labelFilter>[0] = {}): Promise<Docker.NetworkInspectInfo[]> {
    return this.docker.listNetworks({ filters: labelFilter(match) });
  }

  async listVolumes(match: Parameters<typeof labelFilter>[0] = {}): Promise<Docker.VolumeInspectInfo[]> {
    const r = await this.docker.listVolumes({ filters: labelFilter(match) });
    return r.Volumes ?? [];
  }

  /**
   * Create a lab network: a bridge with a fixed subnet that the host neither routes nor NATs.
   * Podman: "internal" (netavark 1.4 then installs no firewall rules and sets forwarding=0 on
   * the bridge, so no other network's teardown can open it up; its "isolate" chains, by
   * contrast, are unhooked from FORWARD when any isolated network is removed). Internal also
   * stops netavark's masquerade from hitting frames merely bridged to a lab router (with
   * br_netfilter loaded), so a router sees its LAN's own addresses. Docker Engine isolates
   * user bridges by default and skips masquerading for bridged frames, while its internal
   * networks drop frames routed by a container, so a plain bridge there.
   */
  async createNetwork(net: {
    name: string;
    subnet: string;
    gateway: string;
    isolated: boolean;
    labels: Record<string, string>;
  }): Promise<void> {
    const hostBlind = this.kind === "podman" && net.isolated;
    await this.docker.createNetwork({
      Name: net.name,
      Driver: "bridge",
      CheckDuplicate: true,
      Internal: hostBlind,
      IPAM: { Driver: "default", Config: [{ Subnet: net.subnet, Gateway: net.gateway }] },
      Options: hostBlind ? { isolate: "true" } : {},
      Labels: net.labels,
    } as Docker.NetworkCreateOptions);
  }

  /**
   * Lab networks (narrowed by `match`) that the host could route into, i.e. not made by
   * createNetwork's rules: labs started by an older version. Names, sorted.
   */
  async hostRoutableNetworks(match: Parameters<typeof labelFilter>[0] = {}): Promise<string[]> {
    if (this.kind !== "podman") return [];
    return (await this.listNetworks(match))
      .filter((n) => !n.Internal)
      .map((n) => n.Name)
      .sort();
  }

  /** Remove everything carrying our labels (narrowed by `match`): containers, then networks, then volumes. */
  async removeLabelled(match: Parameters<typeof labelFilter>[0] = {}): Promise<{ containers: number; networks: number; volumes: number }> {
    const containers = await this.listContainers(match);
    await Promise.all(
      containers.map((c) =>
        this.docker
          .getContainer(c.Id)
          .remove({ force: true, v: true })
          .catch((e: { statusCode?: number }) => {
            if (e.statusCode !== 404) throw e;
          }),
      ),
    );
    const networks = await this.listNetworks(match);
    for (const n of networks) {
      await this.docker
        .getNetwork(n.Id)
        .remove()
        .catch((e: { statusCode?: number }) => {
          if (e.statusCode !== 404) throw e;
        });
    }
    const volumes = await this.listVolumes(match);
    for (const v of volumes)
      await this.docker
        .getVolume(v.Name)
        .remove({ force: true })
        .catch(() => {});
    return { containers: containers.length, networks: networks.length, volumes: volumes.length };
  }

  /**
   * Containers an image build is using right now. Podman runs build steps in buildah
   * containers that the Docker API does not list, and it keeps running the current step after
   * the client hangs up (measured with podman 4.3.1: the step runs to its end, then the build
   * stops without tagging and removes them); libpod's `external` listing shows them. Docker Engine's builder
   * cancels at once when the client hangs up and removes its containers (forcerm).
   */
  async buildContainers(): Promise<string[]> {
    if (this.kind !== "podman") return [];
    const all = await new Promise<{ Id: string; IsInfra?: boolean }[]>((resolve, reject) =>
      this.docker.modem.dial(
        { path: "/v4.0.0/libpod/containers/json?", method: "GET", options: { all: true, external: true }, statusCodes: { 200: true } },
        (err: unknown, data: unknown) => (err ? reject(err) : resolve((data as { Id: string }[]) ?? [])),
      ),
    );
    const regular = new Set((await this.docker.listContainers({ all: true })).map((c) => c.Id));
    return all.map((c) => c.Id).filter((id) => !regular.has(id));
  }

  async imageExists(ref: string): Promise<boolean> {
    try {
      await this.docker.getImage(ref).inspect();
      return true;
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return false;
      throw e;
    }
  }

  async containerState(name: string): Promise<"running" | "exited" | "absent" | string> {
    try {
      const info = await this.docker.getContainer(name).inspect();
      return info.State.Status;
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return "absent";
      throw e;
    }
  }
}
