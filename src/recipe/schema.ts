import type * as z from "zod";
import { IMAGE_ROLE_NAMES } from "../images/roles.ts";
import { bool, field, list, map, name, num, obj, oneOf, pair, scalars, str, typed } from "./shapes.ts";

/**
 * The recipe format, written once: the loader validates with these schemas, types.ts takes the
 * TypeScript types from them, and `npm run docs` writes the tables of recipes/README.md from
 * the field texts below (a unit test fails when README and schema disagree).
 * Field order is the order the README lists and "unknown field" messages name.
 */

const CIDR = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\/\d{1,2}$/;
const IPV4 = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;
const HOST = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** Kernel queueing disciplines a choice may need (`requires`); src/lab/impairments.ts probes them. */
export const QDISC_NAMES = ["netem", "tbf"] as const;
const when = (what: string) =>
  field(str(/^[a-z-]+=[a-z0-9-]+$/, "option=value", "option=value").optional(), `${what} only when that option has that value.`);

export const fileSchema = obj("file", {
  path: field(
    str(/^\//, "an absolute path", "path"),
    "Absolute. Node files use it as written; in an action's `file` it is a template too.",
  ),
  template: field(str().optional(), "A file in the recipe folder, rendered with the template names below."),
  content: field(str().optional(), "Inline text, also rendered. With neither `template` nor `content`, the file is empty."),
  mode: field(
    str(/^0?[0-7]{3}$/, 'an octal mode like "0600"', "octal").optional(),
    'An octal string such as `"0600"`: quote it, or YAML reads it as a number. Default `"0644"`.',
  ),
}).transform((f) => ({ ...f, mode: f.mode ? Number.parseInt(f.mode, 8) : 0o644 }));

/** A node as written, in `nodes` and (every field optional) in an option's overrides. */
const nodeShape = {
  image: field(
    oneOf(IMAGE_ROLE_NAMES),
    "The image role (a folder in `images/`, listed under Image roles below), which also gives the node's default `caps`, `devices` and `sysctls`. A new role needs a folder in `images/` and an entry in `src/images/roles.ts`.",
  ),
  container: field(
    str(HOST, "a container name", "container name"),
    "The container name in the default lab, usually the workshop's (`wg-recipe-1_lighthouse`). Letters, digits, `_ . -`.",
  ),
  hostname: field(str(HOST, "a host name", "host name"), "The container's hostname. Letters, digits, `_ . -`."),
  role: field(
    str().optional(),
    'Human-readable role, used for the tmux pane title ("Lighthouse (wg-recipe-1_lighthouse)") and available as `{{ nodes.<node>.role }}`. Defaults to the hostname.',
  ),
  interactive: field(
    bool().optional(),
    "`true`: the node gets a pane in the tmux workspace, running an interactive bash. Default `false`.",
  ),
  networks: field(
    map(str(IPV4, "an IPv4 address", "IPv4 address")),
    "Network name → the node's IPv4 address on it, inside that network's subnet. The container is created on the first network listed (its `eth0`); the others are attached afterwards, in order.",
  ),
  caps: field(
    list(str(/^[A-Z_]+$/, "a capability like NET_ADMIN", "capability"), "list of capabilities").optional(),
    "Capabilities to add. Default: the image role's (see Image roles). A list given here replaces it: `[]` for none. `ip`, `nft` and `wg` need `NET_ADMIN`; `ping`, `tracepath` and `tcpdump` need `NET_RAW`, which podman does not grant by default.",
  ),
  sysctls: field(
    scalars().optional(),
    "Map, e.g. `{ net.ipv4.ip_forward: 1 }` for a router. Default: the image role's; a map given here replaces it.",
  ),
  gateway: field(
    name().optional(),
    "A node (a router on a network both share) that becomes this node's default route **before** the container's own process starts, e.g. `home-router` for a home LAN host. Podman's lab networks are internal (the host neither routes nor NATs them), so a LAN host has no default route otherwise.",
  ),
  devices: field(
    list(str(/^\/dev\//, "a device path", "device path")).optional(),
    "Host devices to pass through, each starting with `/dev/`. Default: the image role's (`/dev/net/tun`, which `wireguard-go` and `tailscaled` need, for `wg-peer` and `tailscale`). A list given here replaces it: `[]` for none.",
  ),
  env: field(scalars().optional(), "Environment variables, a map of names to scalars."),
  command: field(list(str()).optional(), "A list of strings that replaces the image's default command."),
  files: field(list(fileSchema).optional(), "Files written into the container **before it starts**. See below."),
  ready: field(
    str().optional(),
    "A shell condition polled inside the container after it starts, until it exits 0 (60 s at most). Setup waits for it. If it never passes, the start fails and shows the container's last log lines.",
  ),
  diagnose: field(
    str().optional(),
    "A shell command run when a step on this node fails (or it never gets ready); its output is shown with the error, above the container's last log lines, e.g. `tailscale status`.",
  ),
  when: when("The node exists"),
};

export const nodeSchema = obj("node", nodeShape);
/** An option's node override: the same fields, each optional; they replace the base node's. */
export const nodeOverrideSchema = typed(obj("node", nodeShape).partial(), "partial node");

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const identifier = () => str(IDENTIFIER, "an identifier", "identifier");

export const actionSchema = obj("action", {
  id: field(identifier().optional(), "Setup only: a name for this step, for other steps' `needs` (a `capture.as` names its step too)."),
  needs: field(
    list(identifier(), "list of step names").optional(),
    "Setup only: the earlier steps (by `id` or `capture.as`) this one waits for; it then runs as soon as they are done, beside other steps. Without `needs`, a step waits for every step before it.",
  ),
  node: field(
    name().optional(),
    "The node to act on, by its name in `nodes` (or in an option's `nodes`). Required unless the action is a `set`.",
  ),
  title: field(
    str().optional(),
    "Text for the progress line. Defaults to `<node>: <command>`. The title is shown even for secret actions, so keep secrets out of it.",
  ),
  run: field(
    str().optional(),
    "A shell command, run as `sh -c` as root in the container, in the image's working directory (`/root` for `wg-peer`, `/` for the others).",
  ),
  file: field(fileSchema.optional(), "A file `{ path, template | content, mode }`, rendered and copied into the running container."),
  set: field(
    scalars().optional(),
    "Live option values to switch to, e.g. `{ nat-b: forwarded }`: runs each option's `apply` actions, as `./start.ts set` does (no `node`).",
  ),
  wait: field(str().optional(), "A shell condition, polled (every 0.1 s, slowing to 1 s) until it succeeds or `timeout` runs out."),
  timeout: field(num().default(60), "Seconds. Default 60. For `run`, how long the command may take. For `wait`, how long to keep polling."),
  capture: field(
    obj("capture", {
      as: field(identifier(), "The name: stdout becomes `{{ vars.<as> }}`."),
      json: field(str().optional(), "A dotted path: parse stdout as JSON and store the value there instead."),
    }).optional(),
    "For `run` only: stores the trimmed stdout (or a value of it as JSON) as `vars.<as>` for later actions. Empty output is an error.",
  ),
  secret: field(bool().default(false), "`true`: the command and its output are never printed, in progress output or in errors."),
  expect: field(
    obj("expect", {
      exit: field(num().optional(), "Exactly this exit code."),
      stdoutContains: field(str().optional(), "stdout contains the text."),
      stdoutMatches: field(str().optional(), "A JavaScript regular expression, multiline, matches stdout."),
    }).optional(),
    "What counts as success. Without it: exit code 0. With a stdout condition and no `exit`, exit 0 is required too.",
  ),
  when: when("The action runs"),
});

const mistakeSchema = obj("mistake", {
  nodes: field(list(name(), "list of node names"), "The nodes to probe, each on its own."),
  when: field(
    str(),
    "A shell probe, run like a check's `run`: exit 0 means this node shows the mistake. Its trimmed stdout is `{{ seen }}` in `hint`.",
  ),
  hint: field(
    str().transform((s) => s.trim()),
    "Shown, once per node that matches, while the exercise does not pass. Placeholders as in a hint, plus `{{ node }}` and `{{ seen }}`.",
  ),
});

const exerciseSchema = obj("exercise", {
  id: field(name(), "The exercise's name, for `solve <recipe> <id>`."),
  when: when("The exercise exists (is checked, hinted, solved)"),
  title: field(str(), "Shown by `check`; may use placeholders."),
  hint: field(
    str().transform((s) => s.trim()),
    "Shown by `check` while the exercise does not pass; may use placeholders. YAML `>` folding is fine.",
  ),
  hints: field(
    list(
      str().transform((s) => s.trim()),
      "list of strings",
    ).default([]),
    "Further hints, each more direct than the last: every `check` (or `hint`) that finds the exercise still not done shows the next one. The count is kept per lab.",
  ),
  mistakes: field(
    list(mistakeSchema, "list of mistakes").default([]),
    "State-aware hints: each has its own probe and shows only when the probe finds that mistake in the lab.",
  ),
  probes: field(
    bool().default(false),
    "`true`: the check sends its own probe (a ping, a request) instead of reading what the attendee left behind, so `check` says that a pass means the network works, not that the command was typed.",
  ),
  check: field(list(actionSchema), "Actions that all succeed, in order, when the exercise is done."),
  solve: field(list(actionSchema).default([]), "Actions that do the exercise (the reference solution)."),
});

const networkSchema = obj("network", {
  subnet: field(str(CIDR, "a CIDR like 192.168.99.0/24", "CIDR"), "An IPv4 CIDR. Use `/24`: other labs (`--lab`) always get `/24`s."),
  isolated: field(
    bool().default(true),
    "Ask the engine to isolate the bridge, so the host won't route between the lab's networks. Default `true`.",
  ),
  description: field(str().optional(), "Documentation."),
});

const choiceSchema = obj("choice", {
  description: field(str().optional(), "What this value means, for `--help` and the guide."),
  nodes: field(
    map(nodeOverrideSchema).optional(),
    "Per node: fields that replace the base node's, checked like a node's. A node name not in `nodes` adds a whole node, which must then give `image`, `container`, `hostname` and `networks`.",
  ),
  vars: field(scalars().optional(), "Merged over the recipe's `vars`."),
  requires: field(
    list(oneOf(QDISC_NAMES), "list of queueing disciplines").optional(),
    "Kernel queueing disciplines (`tc`) this value needs, e.g. `[netem]` for latency. Checked before anything changes: on a host whose kernel lacks one, the start or `set` stops with one sentence (`doctor` says which this host has).",
  ),
  liveOnly: field(
    bool().default(false),
    "Only `./start.ts set` may choose this value, on a running lab: e.g. cutting the coordinator off, which the lab's setup needs. A start given it stops with one sentence, before anything is created. Default `false`.",
  ),
});

const optionSchema = obj("option", {
  description: field(str(), "What the choice is about, for the person starting the lab."),
  default: field(str(), "The choice taken unless the command line says otherwise; one of `choices`."),
  choices: field(map(choiceSchema), "The values, each with what it changes (`{}`: nothing)."),
  apply: field(
    list(actionSchema).default([]),
    "Actions that put the chosen value in place on running containers: run at start before `setup`, and again by `./start.ts set` without a restart (a live option).",
  ),
});

const matrixEntrySchema = obj("matrix entry", {
  set: field(scalars(), "Option values of this entry, e.g. `{ nat-a: easy, nat-b: hard }`."),
  between: field(pair(name(), "node names"), "The two nodes whose path is predicted."),
  path: field(oneOf(["direct", "relayed"]), "The predicted path: `direct` (a UDP ip:port) or `relayed` (DERP)."),
  why: field(
    str().transform((s) => s.trim()),
    "Why, in a sentence; the guide teaches the same.",
  ),
});

const allowSchema = obj("allow", {
  from: field(name(), "The source node."),
  to: field(name(), "The destination node."),
  ports: field(list(num(), "list of ports"), "The TCP ports `from` should reach on `to`."),
});

const reachabilitySchema = obj("reachability", {
  nodes: field(list(name(), "list of node names"), "The Tailscale nodes probed, each as a source and as a destination."),
  ports: field(list(num(), "list of ports"), "The TCP ports probed on every destination."),
  allow: field(
    list(allowSchema, "list of allowed flows").default([]),
    "What the finished lab lets through; every other source x destination x port should be blocked.",
  ),
});

const overlaySchema = obj("link", {
  between: field(pair(name(), "node names"), "The two nodes the link joins."),
  label: field(str().default(""), "Text on the link."),
  kind: field(oneOf(["tunnel", "control"]).default("tunnel"), "`tunnel` (solid) or `control` (dashed). Default `tunnel`."),
});

const paneSchema = obj("pane", {
  title: field(str(), "The pane's title."),
  command: field(
    str(/^[a-z]+( --?[a-z][a-z-]*( [0-9]+)?)*$/, "a ./start.ts command and its flags", "command"),
    "A `./start.ts` command and its flags, e.g. `paths --watch`; the harness adds the recipe and `--lab`. Runs until the pane is closed (Ctrl-C).",
  ),
});

export const recipeSchema = obj("recipe", {
  name: field(name(), "Must equal the folder name."),
  title: field(str(), "Shown by `--help` and when the lab starts."),
  summary: field(str().default(""), "One paragraph about the lab (documentation)."),
  guide: field(str().optional(), "Path of the attendee guide, e.g. `labs/recipe-2.md` (documentation)."),
  networks: field(map(networkSchema), "The lab's networks."),
  wireguard: field(
    obj("object", {
      interface: field(
        str(/^[a-z0-9-]{1,15}$/, "an interface name", "interface name"),
        "The interface name the recipe's configs use (up to 15 of a-z 0-9 -). The harness does not read it.",
      ),
      keys: field(list(name(), "list of node names"), "The nodes that get a fresh key pair at each start."),
    }).optional(),
    "Key pairs to generate for the lab.",
  ),
  tls: field(
    obj("object", {
      for: field(name(), "The server's node."),
      names: field(list(str()), "Extra DNS names for the certificate."),
    }).optional(),
    "A CA and server certificate to generate for the lab.",
  ),
  vars: field(scalars().default({}), "Free values for templates (`{{ vars.X }}`)."),
  options: field(map(optionSchema).default({}), "Choices made at start (`--control builtin`)."),
  nodes: field(map(nodeSchema), "The containers."),
  overlay: field(
    list(overlaySchema, "list of links").default([]),
    "Links `graph` draws over the networks: tunnels and control connections (documentation).",
  ),
  panes: field(
    list(paneSchema, "list of panes").default([]),
    "Extra panes of the workspace, after the nodes' shells, each running a `./start.ts` command on this lab that keeps itself up to date (e.g. `paths --watch`).",
  ),
  setup: field(list(actionSchema).default([]), "Run once, in order, when the lab starts."),
  matrix: field(
    list(matrixEntrySchema, "list of matrix entries").default([]),
    "Outcomes the recipe predicts for combinations of its options (e.g. the NAT matrix): what tests assert against the clients' own reports; never shown as observed.",
  ),
  reachability: field(
    reachabilitySchema.optional(),
    "The intended reachability between the lab's nodes, which `./start.ts matrix` probes with real TCP connections and shows beside what it measured.",
  ),
  exercises: field(list(exerciseSchema).default([]), "What `check` and `solve` work on, in this order."),
});

/** Every object the README documents, by the name its generated table has between the markers. */
export const documented = {
  recipe: recipeSchema,
  network: networkSchema,
  wireguard: recipeSchema.shape.wireguard,
  tls: recipeSchema.shape.tls,
  option: optionSchema,
  choice: choiceSchema,
  node: nodeSchema,
  file: fileSchema,
  overlay: overlaySchema,
  pane: paneSchema,
  action: actionSchema,
  expect: actionSchema.shape.expect,
  capture: actionSchema.shape.capture,
  exercise: exerciseSchema,
  mistake: mistakeSchema,
  matrix: matrixEntrySchema,
  reachability: reachabilitySchema,
  allow: allowSchema,
} satisfies Record<string, z.ZodType>;
