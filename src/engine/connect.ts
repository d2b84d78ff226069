import { existsSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { createRequire } from "node:module";
import type Docker from "dockerode";
import { errorMessage } from "../errors.ts";
import { OWN_PODMAN_SOCKET } from "../paths.ts";

export type EngineKind = "podman" | "docker";

export interface EngineEndpoint {
  /** What DOCKER_HOST would be for this engine (the docker CLI reads it). */
  dockerHost: string;
  /** Where it came from, for doctor and error messages. */
  source: string;
}

/**
 * Candidate API sockets, in the order we prefer them when DOCKER_HOST is not set: our own
 * podman service first, so a machine that also has Docker keeps using podman (CI does).
 */
export const CANDIDATE_SOCKETS: EngineEndpoint[] = [
  { dockerHost: `unix://${OWN_PODMAN_SOCKET}`, source: "podman service started by ./start.ts setup" },
  { dockerHost: "unix:///run/podman/podman.sock", source: "system podman socket" },
  { dockerHost: "unix:///var/run/docker.sock", source: "Docker Engine socket" },
];

/**
 * The sockets discovery looks at. WG3_CANDIDATE_SOCKETS (paths separated by ":") replaces the
 * list, so tests can put a dead or absent socket where discovery looks without touching the
 * machine's real engines.
 */
export function candidateSockets(): EngineEndpoint[] {
  const override = process.env.WG3_CANDIDATE_SOCKETS;
  if (override === undefined) return CANDIDATE_SOCKETS;
  return override
    .split(":")
    .filter(Boolean)
    .map((path) => ({ dockerHost: `unix://${path}`, source: "WG3_CANDIDATE_SOCKETS" }));
}

// Loaded on first use: dockerode (with ssh2 and gRPC) is a fifth of the CLI's start-up, and
// many commands (help, check of a stopped lab, preflight) never talk to an engine.
let DockerClass: typeof Docker | undefined;
const loadDocker = (): typeof Docker => {
  DockerClass ??= createRequire(import.meta.url)("dockerode") as typeof Docker;
  return DockerClass;
};

export function dockerodeFor(dockerHost: string): Docker {
  const Docker = loadDocker();
  if (dockerHost.startsWith("unix://")) return new Docker({ socketPath: dockerHost.slice("unix://".length) });
  const url = new URL(dockerHost.replace(/^tcp:/, "http:"));
  return new Docker({ host: url.hostname, port: Number(url.port || 2375), protocol: "http" });
}

export interface Probe {
  endpoint: EngineEndpoint;
  state: "alive" | "dead" | "absent";
  reason?: string;
  kind?: EngineKind;
  version?: string;
}

/**
 * Ask an endpoint who it is within `timeoutMs`; tells absent, dead and alive apart. `/_ping`
 * answers in milliseconds and names the engine in its Server header (`Libpod/4.3.1 (linux)`,
 * `Docker/27.3.1 (linux)`); podman's `/version` runs conmon and runc to list their versions and
 * takes half a second, on every command.
 */
export async function probe(endpoint: EngineEndpoint, timeoutMs = 3000): Promise<Probe> {
  const path = endpoint.dockerHost.startsWith("unix://") ? endpoint.dockerHost.slice(7) : undefined;
  if (path && !existsSync(path)) return { endpoint, state: "absent" };
  try {
    const server = await pingServerHeader(endpoint.dockerHost, timeoutMs);
    const m = /^(Libpod|Docker)\/(\S+)/i.exec(server ?? "");
    const kind: EngineKind = m?.[1]?.toLowerCase() === "libpod" ? "podman" : "docker";
    return { endpoint, state: "alive", kind, version: m?.[2] ?? "?" };
  } catch (err) {
    return { endpoint, state: "dead", reason: errorMessage(err) };
  }
}

/** GET /_ping; its Server header, or an error (no answer in time, not 200). */
function pingServerHeader(dockerHost: string, timeoutMs: number): Promise<string | undefined> {
  const target = dockerHost.startsWith("unix://")
    ? { socketPath: dockerHost.slice("unix://".length) }
    : (() => {
        const url = new URL(dockerHost.replace(/^tcp:/, "http:"));
        return { host: url.hostname, port: Number(url.port || 2375) };
      })();
  return new Promise((resolve, reject) => {
    // Destroyed on timeout: a hung engine must not keep its connection (and this process) open.
    const req = httpRequest({ ...target, path: "/_ping", method: "GET", timeout: timeoutMs }, (res) => {
      res.resume();
      if (res.statusCode !== 200) reject(new Error(`/_ping answered HTTP ${res.statusCode}`));
      else resolve(typeof res.headers.server === "string" ? res.headers.server : undefined);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/** Find a live engine: DOCKER_HOST when set (and then only it), else the candidate sockets. */
export async function findEngine(): Promise<{ live?: Probe; probes: Probe[] }> {
  if (process.env.DOCKER_HOST) {
    const p = await probe({ dockerHost: process.env.DOCKER_HOST, source: "DOCKER_HOST" });
    return { live: p.state === "alive" ? p : undefined, probes: [p] };
  }
  const probes: Probe[] = [];
  for (const endpoint of candidateSockets()) {
    const p = await probe(endpoint);
    probes.push(p);
    if (p.state === "alive") return { live: p, probes };
  }
  return { probes };
}

/** One sentence for "no engine answers", naming the socket that is there but dead, if any. */
export function describeNoEngine(probes: Probe[]): string {
  const denied = probes.find((p) => p.state === "dead" && /EACCES|EPERM/.test(p.reason ?? ""));
  if (denied) {
    return `The container engine socket ${denied.endpoint.dockerHost} (${denied.endpoint.source}) exists but this user may not use it (permission denied); run as root (sudo), as the labs need a rootful engine.`;
  }
  const dead = probes.find((p) => p.state === "dead");
  if (dead) {
    return `The container engine socket ${dead.endpoint.dockerHost} (${dead.endpoint.source}) exists but does not answer (${dead.reason}); restart that engine, or remove the stale socket and run ./start.ts setup.`;
  }
  if (process.env.DOCKER_HOST) return `DOCKER_HOST=${process.env.DOCKER_HOST} does not exist; unset it or start that engine.`;
  return "No container engine is reachable.";
}
