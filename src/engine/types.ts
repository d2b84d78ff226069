/**
 * What the rest of the harness knows of the engine: our own types, so that nothing outside
 * src/engine/ depends on the Docker API's shapes (podman and Docker Engine both speak it).
 */
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

export interface ContainerSummary {
  id: string;
  /** Without the API's leading slash. */
  name: string;
  /** running, exited, created, ... */
  state: string;
  labels: Record<string, string>;
}

export interface ContainerDetails extends ContainerSummary {
  hostname: string;
  startedAt: string;
  running: boolean;
  exitCode: number;
  /** Network name -> IPv4 address. */
  addresses: Record<string, string>;
}

export interface NetworkSummary {
  id: string;
  name: string;
  labels: Record<string, string>;
  /** IPv4 subnets (CIDR). */
  subnets: string[];
  /** The host neither routes nor NATs it (podman's and Docker's "internal"). */
  internal: boolean;
}

export interface ImageSummary {
  id: string;
  tags: string[];
  labels: Record<string, string>;
}

/** A lab network: a bridge with a fixed subnet. */
export interface NetworkSpec {
  name: string;
  subnet: string;
  gateway: string;
  isolated: boolean;
  labels: Record<string, string>;
}

/** A container on one or more networks with fixed addresses, created but not started. */
export interface ContainerSpec {
  name: string;
  hostname: string;
  image: string;
  command?: string[];
  env: Record<string, string>;
  labels: Record<string, string>;
  caps: string[];
  sysctls: Record<string, string>;
  devices: string[];
  /** In order: the first is the container's eth0. */
  networks: { name: string; ip: string }[];
}

export interface BuildSpec {
  /** A tar stream of the build context. */
  context: NodeJS.ReadableStream;
  tag: string;
  buildargs: Record<string, string>;
  labels: Record<string, string>;
  /** Each line the build prints. */
  onLine?: (line: string) => void;
  /** Aborting drops the connection, which makes the engine cancel the build. */
  signal?: AbortSignal;
}

export interface RuntimeInfo {
  runtime: string;
  cgroupVersion: string;
}

/** Narrows our resources by label: `{ lab, recipe }`, `{ lab }`, ... */
export type LabelMatch = Partial<Record<"lab" | "recipe" | "node" | "run" | "classroom", string>>;

/** An interactive shell in a container (a terminal in a browser): its output, its input, its window size. */
export interface TerminalSession {
  /** Bytes the shell prints (one pseudo-terminal, so stdout and stderr arrive mixed, as on a screen). */
  onData(fn: (chunk: Buffer) => void): void;
  /** Called once, when the shell ends or the connection to it closes. */
  onEnd(fn: () => void): void;
  write(data: string | Buffer): void;
  resize(cols: number, rows: number): Promise<void>;
  close(): void;
}
