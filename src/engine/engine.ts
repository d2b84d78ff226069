import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { PassThrough } from "node:stream";
import type Docker from "dockerode";
import { pack } from "tar-stream";
import { OWN_PODMAN_SOCKET } from "../paths.ts";
import { dockerodeFor, type EngineKind, type Probe } from "./connect.ts";
import { LABEL, labelFilter, PROJECT } from "./labels.ts";
import type {
  BuildSpec,
  ContainerDetails,
  ContainerSpec,
  ContainerSummary,
  ExecOptions,
  ExecResult,
  ImageSummary,
  LabelMatch,
  NetworkSpec,
  NetworkSummary,
  RuntimeInfo,
  TerminalSession,
} from "./types.ts";

export type {
  ContainerDetails,
  ContainerSpec,
  ContainerSummary,
  ExecOptions,
  ExecResult,
  ImageSummary,
  NetworkSummary,
  TerminalSession,
} from "./types.ts";

const notFound = (e: { statusCode?: number }) => {
  if (e.statusCode !== 404) throw e;
};

/**
 * The harness's only way to a container engine (podman or Docker Engine, through the Docker
 * API): networks, containers, exec, files, images and labels. Nothing outside src/engine/
 * sees the API client or its types.
 */
export class Engine {
  readonly #docker: Docker;

  constructor(
    readonly dockerHost: string,
    readonly kind: EngineKind,
    readonly version: string,
  ) {
    this.#docker = dockerodeFor(dockerHost);
  }

  /** The engine a probe found answering. */
  static of(live: Probe): Engine {
    return new Engine(live.endpoint.dockerHost, live.kind ?? "podman", live.version ?? "?");
  }

  /** The CLI a person would type on this host for the same engine (podman, or docker -H HOST). */
  cliArgs(): string[] {
    if (this.kind !== "podman") return ["docker", "-H", this.dockerHost];
    // podman's own sockets serve the default storage, which plain `podman` (the book's command)
    // uses too; any other (a class's second engine) has its own storage behind it.
    return DEFAULT_STORAGE_SOCKETS.includes(this.dockerHost) ? ["podman"] : ["podman", "--remote", "--url", this.dockerHost];
  }

  /** The last lines a container logged (stdout and stderr), or "" when there are none. */
  async logTail(container: string, lines = 15): Promise<string> {
    try {
      const buf = (await this.#docker.getContainer(container).logs({ stdout: true, stderr: true, tail: lines })) as unknown as Buffer;
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
    const c = this.#docker.getContainer(container);
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
    this.#docker.modem.demuxStream(stream, out, err);
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

  /**
   * An interactive command in a running container on a pseudo-terminal the engine allocates
   * (`exec -it`): nothing runs on the host, so a browser terminal built on it reaches only
   * that container.
   */
  async terminal(container: string, cmd: string[], size: { cols: number; rows: number }): Promise<TerminalSession> {
    const exec = await this.#docker.getContainer(container).exec({
      Cmd: cmd,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Tty: true,
      Env: ["TERM=xterm-256color", `COLUMNS=${size.cols}`, `LINES=${size.rows}`],
    });
    const stream = (await exec.start({
      hijack: true,
      stdin: true,
      Tty: true,
    } as Docker.ExecStartOptions)) as unknown as NodeJS.ReadWriteStream & {
      destroy(): void;
    };
    const resize = async (cols: number, rows: number) => {
      await exec.resize({ w: cols, h: rows }).catch(() => {}); // a shell that just ended cannot be resized
    };
    await resize(size.cols, size.rows);
    let ended = false;
    const endFns: (() => void)[] = [];
    const end = () => {
      if (ended) return;
      ended = true;
      for (const fn of endFns) fn();
    };
    stream.on("end", end);
    stream.on("close", end);
    stream.on("error", end);
    return {
      onData: (fn) => stream.on("data", (b: Buffer) => fn(b)),
      onEnd: (fn) => {
        if (ended) fn();
        else endFns.push(fn);
      },
      write: (data) => {
        if (!ended) stream.write(data);
      },
      resize,
      close: () => stream.destroy(),
    };
  }

  /** A command's stdout; throws with its stderr when it exits non-zero. */
  async output(container: string, cmd: string[], opts: ExecOptions = {}): Promise<string> {
    const r = await this.exec(container, cmd, opts);
    if (r.exitCode !== 0) {
      throw new Error(`\`${cmd.join(" ")}\` in ${container} exited ${r.exitCode}: ${(r.stderr || r.stdout).trim().slice(-800)}`);
    }
    return r.stdout;
  }

  async sh(container: string, script: string, opts: ExecOptions = {}): Promise<ExecResult> {
    return this.exec(container, ["sh", "-c", script], opts);
  }

  // --- Containers -------------------------------------------------------------------------

  async listContainers(match: LabelMatch = {}): Promise<ContainerSummary[]> {
    const list = await this.#docker.listContainers({ all: true, filters: labelFilter(match) });
    return list.map((c) => ({ id: c.Id, name: (c.Names[0] ?? c.Id).replace(/^\//, ""), state: c.State, labels: c.Labels ?? {} }));
  }

  /** Every container id the API lists, ours or not (for leftovers checks). */
  async allContainerIds(): Promise<string[]> {
    return (await this.#docker.listContainers({ all: true })).map((c) => c.Id);
  }

  /** Create a container on its networks with fixed addresses (the first network is eth0). */
  async createContainer(spec: ContainerSpec): Promise<string> {
    const [first, ...rest] = spec.networks;
    if (!first) throw new Error(`container ${spec.name} needs at least one network`);
    const c = await this.#docker.createContainer({
      name: spec.name,
      Hostname: spec.hostname,
      Image: spec.image,
      Cmd: spec.command,
      Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
      Tty: true,
      OpenStdin: true,
      StopTimeout: 3,
      Labels: spec.labels,
      HostConfig: {
        NetworkMode: first.name,
        CapAdd: spec.caps,
        Sysctls: spec.sysctls,
        Devices: spec.devices.map((d) => ({ PathOnHost: d, PathInContainer: d, CgroupPermissions: "rwm" })),
      },
      NetworkingConfig: { EndpointsConfig: { [first.name]: { IPAMConfig: { IPv4Address: first.ip } } } },
    });
    for (const net of rest) {
      await this.#docker.getNetwork(net.name).connect({ Container: c.id, EndpointConfig: { IPAMConfig: { IPv4Address: net.ip } } });
    }
    return c.id;
  }

  async start(container: string): Promise<void> {
    await this.#docker.getContainer(container).start();
  }

  /** Stop (SIGTERM, then SIGKILL after `graceSeconds`). */
  async stop(container: string, graceSeconds = 3): Promise<void> {
    await this.#docker.getContainer(container).stop({ t: graceSeconds });
  }

  async inspect(container: string): Promise<ContainerDetails> {
    const i = await this.#docker.getContainer(container).inspect();
    const addresses: Record<string, string> = {};
    for (const [net, v] of Object.entries(i.NetworkSettings.Networks ?? {})) addresses[net] = v.IPAddress;
    return {
      id: i.Id,
      name: i.Name.replace(/^\//, ""),
      state: i.State.Status,
      labels: i.Config.Labels ?? {},
      hostname: i.Config.Hostname,
      startedAt: i.State.StartedAt,
      running: i.State.Running,
      exitCode: i.State.ExitCode,
      addresses,
    };
  }

  /** Copy one file into a container (created or running) with the given mode. */
  async putFile(container: string, path: string, content: string | Buffer, mode: number): Promise<void> {
    const p = pack();
    p.entry({ name: path.replace(/^\/+/, ""), mode }, typeof content === "string" ? Buffer.from(content) : content);
    p.finalize();
    await this.#docker.getContainer(container).putArchive(p as never, { path: "/" });
  }

  /** Memory a container uses as `docker stats` shows it: usage minus inactive page cache. */
  async memoryUsage(container: string): Promise<number> {
    const s = (await this.#docker.getContainer(container).stats({ stream: false })) as unknown as {
      memory_stats?: { usage?: number; stats?: Record<string, number> };
    };
    const st = s.memory_stats?.stats ?? {};
    return Math.max(0, (s.memory_stats?.usage ?? 0) - (st.total_inactive_file ?? st.inactive_file ?? 0));
  }

  /**
   * Run `command` once in a throwaway labelled container without network, to its end; return
   * its exit code and output. The container is removed whatever happens.
   */
  async runOnce(
    image: string,
    command: string[],
    opts: { entrypoint?: string[]; labels?: Record<string, string>; timeoutMs?: number; capAdd?: string[] } = {},
  ): Promise<{ exitCode: number; output: string }> {
    const name = `wg3ways-once-${process.pid}-${Date.now()}`;
    const timeoutMs = opts.timeoutMs ?? 30_000;
    try {
      const c = await this.#docker.createContainer({
        name,
        Image: image,
        Entrypoint: opts.entrypoint,
        Cmd: command,
        Labels: opts.labels ?? { [LABEL.project]: PROJECT, [LABEL.role]: "probe" },
        HostConfig: { NetworkMode: "none", CapAdd: opts.capAdd },
      });
      await c.start();
      const r = (await Promise.race([
        c.wait(),
        new Promise((_, reject) => setTimeout(() => reject(new Error(`no exit within ${timeoutMs / 1000} s`)), timeoutMs).unref()),
      ])) as { StatusCode: number };
      return { exitCode: r.StatusCode, output: await this.logTail(name, 10_000) };
    } finally {
      await this.#docker
        .getContainer(name)
        .remove({ force: true })
        .catch(() => {});
    }
  }

  async runtimeInfo(): Promise<RuntimeInfo> {
    const info = (await this.#docker.info()) as { DefaultRuntime?: string; CgroupVersion?: string };
    return { runtime: info.DefaultRuntime ?? "?", cgroupVersion: info.CgroupVersion ?? "?" };
  }

  // --- Networks and volumes ---------------------------------------------------------------

  /** Our networks (narrowed by `match`), or with `match === "all"` every network of the engine. */
  async listNetworks(match: LabelMatch | "all" = {}): Promise<NetworkSummary[]> {
    const list = await this.#docker.listNetworks(match === "all" ? {} : { filters: labelFilter(match) });
    return list.map((n) => ({
      id: n.Id,
      name: n.Name,
      labels: n.Labels ?? {},
      subnets: (n.IPAM?.Config ?? []).map((c) => c.Subnet ?? "").filter((sub) => sub.includes(".")),
      internal: Boolean(n.Internal),
    }));
  }

  async listVolumes(match: LabelMatch = {}): Promise<{ name: string }[]> {
    const r = await this.#docker.listVolumes({ filters: labelFilter(match) });
    return (r.Volumes ?? []).map((v) => ({ name: v.Name }));
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
  async createNetwork(net: NetworkSpec): Promise<void> {
    const hostBlind = this.kind === "podman" && net.isolated;
    try {
      await this.#docker.createNetwork({
        Name: net.name,
        Driver: "bridge",
        CheckDuplicate: true,
        Internal: hostBlind,
        IPAM: { Driver: "default", Config: [{ Subnet: net.subnet, Gateway: net.gateway }] },
        Options: { [BRIDGE_NAME_OPTION]: bridgeName(net), ...(hostBlind ? { isolate: "true" } : {}) },
        Labels: net.labels,
      } as Docker.NetworkCreateOptions);
    } catch (e) {
      // Another lab (maybe another process) took the subnet since it was chosen.
      if (/already used|overlaps/i.test(String((e as Error).message))) throw new SubnetTakenError(net.subnet);
      throw e;
    }
  }

  /**
   * Lab networks (narrowed by `match`) that the host could route into, i.e. not made by
   * createNetwork's rules: labs started by an older version. Names, sorted.
   */
  async hostRoutableNetworks(match: LabelMatch = {}): Promise<string[]> {
    if (this.kind !== "podman") return [];
    return (await this.listNetworks(match))
      .filter((n) => !n.internal)
      .map((n) => n.name)
      .sort();
  }

  /** Remove everything carrying our labels (narrowed by `match`): containers, then networks, then volumes. */
  async removeLabelled(match: LabelMatch = {}): Promise<{ containers: number; networks: number; volumes: number }> {
    const containers = await this.removeContainers(match);
    const networks = await this.listNetworks(match);
    for (const n of networks) await this.#docker.getNetwork(n.id).remove().catch(notFound);
    const volumes = await this.listVolumes(match);
    for (const v of volumes)
      await this.#docker
        .getVolume(v.name)
        .remove({ force: true })
        .catch(() => {});
    return { containers, networks: networks.length, volumes: volumes.length };
  }

  /** Remove only the containers carrying our labels (narrowed by `match`), with their anonymous volumes; how many. */
  async removeContainers(match: LabelMatch = {}): Promise<number> {
    const containers = await this.listContainers(match);
    await Promise.all(containers.map((c) => this.#removeForced(c.id)));
    return containers.length;
  }

  /**
   * Force-remove one container. podman refuses ("container state improper") when the container
   * stops on its own between its state check and its kill; asked again it removes it.
   */
  async #removeForced(id: string, tries = 3): Promise<void> {
    try {
      await this.#docker.getContainer(id).remove({ force: true, v: true });
    } catch (e) {
      const err = e as { statusCode?: number; message?: string };
      if (err.statusCode === 404) return;
      if (tries > 1 && /container state improper|could not be stopped/.test(err.message ?? "")) return this.#removeForced(id, tries - 1);
      throw e;
    }
  }

  // --- Images -------------------------------------------------------------------------------

  /** Our images (label wg3ways.project), optionally of one role. */
  async listImages(role?: string): Promise<ImageSummary[]> {
    const label = [`${LABEL.project}=${PROJECT}`, ...(role ? [`${LABEL.role}=${role}`] : [])];
    const list = await this.#docker.listImages({ filters: JSON.stringify({ label }) });
    return list.map((i) => ({ id: i.Id, tags: i.RepoTags ?? [], labels: i.Labels ?? {} }));
  }

  /** Remove an image (by id or tag); false when it is in use or gone. */
  async removeImage(ref: string, force = false): Promise<boolean> {
    try {
      await this.#docker.getImage(ref).remove({ force });
      return true;
    } catch {
      return false;
    }
  }

  /** Pull `ref`; false when no registry serves it (offline machines). */
  async pullImage(ref: string): Promise<boolean> {
    try {
      const stream = await this.#docker.pull(ref);
      await new Promise<void>((resolve, reject) =>
        this.#docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve())),
      );
      return this.imageExists(ref);
    } catch {
      return false;
    }
  }

  /**
   * Import a root filesystem tarball as image `ref`. Imported under a scratch name first
   * (podman's compat API ignores the tag parameter of an import), then tagged, and the scratch
   * name dropped.
   */
  async importImage(tarPath: string, ref: string, changes: string[]): Promise<void> {
    const scratch = `localhost/wg3ways-import-${process.pid}`;
    const stream = await this.#docker.importImage(createReadStream(tarPath) as never, { repo: scratch, changes } as never);
    const out = await new Promise<{ id?: string; status?: string }[]>((resolve, reject) =>
      this.#docker.modem.followProgress(stream as never, (err: Error | null, o: { id?: string }[]) => (err ? reject(err) : resolve(o))),
    );
    const all = await this.#docker.listImages();
    const id =
      out.map((o) => o.id ?? o.status ?? "").find((x) => /^(sha256:)?[0-9a-f]{64}$/.test(x)) ??
      all.find((i) => i.RepoTags?.some((t) => t.startsWith(scratch)))?.Id;
    if (!id) throw new Error(`import of ${tarPath} reported no image id`);
    const [repo, tag] = ref.split(":");
    await this.#docker.getImage(id).tag({ repo: repo!, tag: tag ?? "latest" });
    for (const t of all.flatMap((i) => i.RepoTags ?? []).filter((x) => x.startsWith(scratch))) await this.removeImage(t);
  }

  /**
   * Build an image; the tag is applied by the engine only when the build succeeds. Rejects
   * with the build's own error text (`BuildError`); on abort, resolves once the stream ends.
   */
  async buildImage(spec: BuildSpec): Promise<void> {
    const stream = (await this.#docker.buildImage(
      spec.context as never,
      {
        t: spec.tag,
        dockerfile: "Containerfile",
        buildargs: spec.buildargs,
        labels: spec.labels,
        rm: true,
        forcerm: true,
      } as never,
    )) as unknown as NodeJS.ReadableStream & { destroy?: () => void };
    const cancel = () => stream.destroy?.();
    if (spec.signal?.aborted) cancel();
    spec.signal?.addEventListener("abort", cancel, { once: true });
    try {
      await new Promise<void>((resolve, reject) => {
        this.#docker.modem.followProgress(
          stream,
          (err: Error | null, out: { error?: string; errorDetail?: { message?: string } }[]) => {
            const failed = out?.find((o) => o.error || o.errorDetail);
            if (err || failed) reject(new BuildError(err?.message ?? failed?.error ?? failed?.errorDetail?.message ?? "unknown error"));
            else resolve();
          },
          (ev: { stream?: string }) => {
            if (ev.stream) spec.onLine?.(ev.stream);
          },
        );
      });
    } finally {
      spec.signal?.removeEventListener("abort", cancel);
    }
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
      this.#docker.modem.dial(
        { path: "/v4.0.0/libpod/containers/json?", method: "GET", options: { all: true, external: true }, statusCodes: { 200: true } },
        (err: unknown, data: unknown) => (err ? reject(err) : resolve((data as { Id: string }[]) ?? [])),
      ),
    );
    const regular = new Set(await this.allContainerIds());
    return all.map((c) => c.Id).filter((id) => !regular.has(id));
  }

  async imageExists(ref: string): Promise<boolean> {
    try {
      await this.#docker.getImage(ref).inspect();
      return true;
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return false;
      throw e;
    }
  }

  /**
   * Copy image `ref` from this engine to `to` (another engine, e.g. a second machine of a
   * class): streamed as the engine's image archive, as `podman save | podman load` would, so
   * that the other engine need not build it again.
   */
  async copyImageTo(to: Engine, ref: string): Promise<void> {
    const archive = await this.#docker.getImage(ref).get();
    const answer = await to.#docker.loadImage(archive);
    // The load's answer is a stream of JSON progress; its end is the load's end.
    await new Promise<void>((resolve, reject) => {
      const out: Buffer[] = [];
      answer.on("data", (d: Buffer) => out.push(d));
      answer.on("error", reject);
      answer.on("end", () => {
        const text = Buffer.concat(out).toString();
        const failed = /"error"\s*:\s*"([^"]+)"/.exec(text)?.[1];
        if (failed) reject(new Error(`loading ${ref} into ${to.dockerHost} failed: ${failed}`));
        else resolve();
      });
    });
    if (!(await to.imageExists(ref))) throw new Error(`${ref} was loaded into ${to.dockerHost} but is not there under that name`);
  }

  async containerState(name: string): Promise<"running" | "exited" | "absent" | string> {
    try {
      const info = await this.#docker.getContainer(name).inspect();
      return info.State.Status;
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return "absent";
      throw e;
    }
  }
}

const BRIDGE_NAME_OPTION = "com.docker.network.bridge.name";
const DEFAULT_STORAGE_SOCKETS = [`unix://${OWN_PODMAN_SOCKET}`, "unix:///run/podman/podman.sock"];

/**
 * The host-side bridge of a lab network, named by the network rather than left to the engine:
 * podman names bridges podman0, podman1, ... by its own networks and the host's interfaces,
 * but creates a bridge only when a container first uses it, so a second engine on this machine
 * (a class on two engines) could pick the same name for another network in between, and the
 * two networks would share one bridge. 15 characters: Linux's limit.
 */
export function bridgeName(net: Pick<NetworkSpec, "name" | "subnet">): string {
  return `wg3-${createHash("sha256").update(`${net.name} ${net.subnet}`).digest("hex").slice(0, 11)}`;
}

/** A build the engine reported as failed (its own message). */
export class BuildError extends Error {}

/** The subnet asked for a network is taken (by another lab, a host route, another engine). */
export class SubnetTakenError extends Error {
  constructor(readonly subnet: string) {
    super(`subnet ${subnet} is already in use`);
  }
}
