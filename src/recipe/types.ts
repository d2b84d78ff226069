/** The shape of recipes/<name>/recipe.yaml, after validation. See recipes/README.md. */

export interface Recipe {
  name: string;
  title: string;
  summary: string;
  /** Folder holding recipe.yaml and its templates. */
  dir: string;
  file: string;
  guide?: string;
  networks: Record<string, NetworkSpec>;
  nodes: Record<string, NodeSpec>;
  wireguard?: { interface: string; keys: string[] };
  tls?: { for: string; names: string[] };
  vars: Record<string, string>;
  /** Alternatives selected at start time, e.g. `--control headscale|builtin`. */
  options: Record<string, OptionSpec>;
  /** Links drawn over the networks: WireGuard/Tailscale tunnels and control connections. */
  overlay: { between: [string, string]; label: string; kind: "tunnel" | "control" }[];
  setup: Action[];
  exercises: Exercise[];
  /**
   * Outcomes the recipe predicts for combinations of its options (e.g. the NAT matrix): what
   * tests assert against the clients' own reports. The harness never shows these as observed.
   */
  matrix: MatrixEntry[];
}

export interface MatrixEntry {
  /** Option values of this entry, e.g. `{ nat-a: easy, nat-b: hard }`. */
  set: Record<string, string>;
  /** The two nodes whose path is predicted. */
  between: [string, string];
  /** The predicted path: `direct` (a UDP ip:port) or `relayed` (DERP). */
  path: "direct" | "relayed";
  /** Why, in a sentence; the guide teaches the same. */
  why: string;
}

export interface OptionSpec {
  description: string;
  default: string;
  /**
   * How the option takes effect in a running lab: actions run after the nodes are ready and
   * before `setup`, and again by `./start.ts set` on every change, with `options.<name>` holding
   * the new value. An option without `apply` is chosen at start only.
   */
  apply: Action[];
  choices: Record<string, { description?: string; nodes?: Record<string, Partial<NodeSpec>>; vars?: Record<string, string> }>;
}

export interface NetworkSpec {
  subnet: string;
  /** Isolated from every other network (default true): the host will not route between them. */
  isolated: boolean;
  description?: string;
}

export interface FileSpec {
  path: string;
  template?: string;
  content?: string;
  mode: number;
}

export interface NodeSpec {
  image: string;
  container: string;
  hostname: string;
  role: string;
  interactive: boolean;
  networks: Record<string, string>;
  caps: string[];
  sysctls: Record<string, string>;
  /** The node that is this node's default route (its address on a shared network), set before the node's own process starts. */
  gateway?: string;
  devices: string[];
  env: Record<string, string>;
  command?: string[];
  files: FileSpec[];
  /** A shell condition polled after start; the node is ready when it exits 0. */
  ready?: string;
  /** Run when a step on this node fails; its output goes into the error (e.g. `tailscale status`). */
  diagnose?: string;
  /** When set, the node exists only if the option has this value, e.g. `control=headscale`. */
  when?: string;
}

export interface Expect {
  exit?: number;
  stdoutContains?: string;
  stdoutMatches?: string;
}

export interface Action {
  /** The node to act on ("" for a `set` action, which acts on the lab). */
  node: string;
  title?: string;
  run?: string;
  file?: FileSpec;
  /** Poll `wait` until it exits 0 (or `expect` holds), up to `timeout` seconds. */
  wait?: string;
  timeout: number;
  capture?: { as: string; json?: string };
  secret: boolean;
  expect?: Expect;
  when?: string;
  /** Change live options of the running lab (`{ nat-b: hard }`), as `./start.ts set` does; no node. */
  set?: Record<string, string>;
}

export interface Exercise {
  id: string;
  title: string;
  hint: string;
  check: Action[];
  solve: Action[];
}
