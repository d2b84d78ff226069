import { randomBytes } from "node:crypto";
import { type ContainerSummary, type Engine, SubnetTakenError } from "../engine/engine.ts";
import { ensureEngine } from "../engine/ensure.ts";
import { LABEL, labLabels } from "../engine/labels.ts";
import { requireHostDevices } from "../engine/preflight.ts";
import { usedSubnets } from "../engine/subnets.ts";
import { UserError } from "../errors.ts";
import { ensureImages, type ImageRole, imageRef, isImageRole } from "../images/build.ts";
import { cidrsOverlap, loadRecipe } from "../recipe/load.ts";
import { effectiveNodes } from "../recipe/nodes.ts";
import { renderLoose } from "../recipe/template.ts";
import type { Action, Recipe } from "../recipe/types.ts";
import { type Progress, stepper } from "../ui/progress.ts";
import { genKeyPair } from "../wireguard/keys.ts";
import { type ActionContext, applyOption, pollUntil, renderFile, runAction } from "./actions.ts";
import { inThrowaway, requireQdiscs } from "./impairments.ts";
import { liveOptions } from "./live.ts";
import { runByNeeds } from "./needs.ts";
import {
  DEFAULT_LAB,
  deletePlan,
  type LabPlan,
  makePlan,
  plannedSubnets,
  readPlan,
  refuseLiveOnlyAtStart,
  resolveOptions,
  savePlan,
  scopeOf,
  validLabName,
} from "./plan.ts";
import { makeLabTls } from "./tls.ts";

export interface UpOptions {
  lab?: string;
  options?: Record<string, string | undefined>;
  progress?: Progress;
  signal?: AbortSignal;
  yes?: boolean;
  engine?: Engine;
  /** Extra labels on the lab's networks and containers (a classroom's name on each seat). */
  labels?: Record<string, string>;
}

export interface UpResult {
  plan: LabPlan;
  engine: Engine;
  alreadyRunning: boolean;
  recipe: Recipe;
}

function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new UserError("Interrupted: everything this start created has been removed.", 130);
}

/** Default lab: the workshop's subnets, or a clear error naming who holds them. Other labs: free /24s. */
async function chooseSubnets(engine: Engine, recipe: Recipe, lab: string): Promise<Record<string, string>> {
  const used = await usedSubnets(engine);
  if (lab === DEFAULT_LAB) {
    for (const [key, n] of Object.entries(recipe.networks)) {
      const clash = used.find((u) => cidrsOverlap(u.subnet, n.subnet));
      if (clash) {
        throw new UserError(
          `Subnet ${n.subnet} (network "${key}" of ${recipe.name}) is already used by ${clash.by}; stop that first, or start this one with --lab NAME.`,
        );
      }
    }
    return {};
  }
  // A random free /24 rather than the lowest: labs started at the same moment by other
  // processes (parallel tests, a classroom) then rarely pick the same one, and up() retries.
  const taken = [...used.map((u) => u.subnet), ...plannedSubnets({ lab, recipe: recipe.name })];
  const free = Array.from({ length: 256 }, (_, i) => `10.213.${i}.0/24`).filter((c) => !taken.some((t) => cidrsOverlap(t, c)));
  const keys = Object.keys(recipe.networks);
  if (free.length < keys.length) throw new UserError("No free /24 is left in 10.213.0.0/16 for another lab; stop a lab first.");
  const out: Record<string, string> = {};
  for (const key of keys) out[key] = free.splice(Math.floor(Math.random() * free.length), 1)[0]!;
  return out;
}

/** WG3_GATEWAY for the image's init: the gateway node's address on the first network both share. */
function gatewayEnv(plan: LabPlan, node: LabPlan["nodes"][string]): Record<string, string> {
  const gw = node.gateway ? plan.nodes[node.gateway] : undefined;
  const shared = gw && Object.keys(node.ip).find((net) => gw.ip[net]);
  return gw && shared ? { WG3_GATEWAY: gw.ip[shared]! } : {};
}

export async function labContainers(engine: Engine, lab: string, recipe?: string): Promise<ContainerSummary[]> {
  return engine.listContainers({ lab, recipe });
}

/** What to show when a step on a node fails: its `diagnose` command's output and its log tail. */
async function failureDetails(engine: Engine, node: LabPlan["nodes"][string] | undefined): Promise<string | undefined> {
  if (!node) return undefined;
  const parts: string[] = [];
  if (node.diagnose) {
    const r = await engine.sh(node.container, node.diagnose, { timeoutMs: 10_000 }).catch(() => undefined);
    if (r) parts.push(`${node.key}$ ${node.diagnose}\n${`${r.stdout}${r.stderr}`.trim()}`);
  }
  const logs = await engine.logTail(node.container);
  if (logs) parts.push(`last log lines of ${node.container}:\n${logs}`);
  return parts.join("\n") || undefined;
}

/**
 * Start a lab: build what is missing, create networks and containers, place files, start,
 * wait for readiness, run setup. On any failure or Ctrl-C, remove what this start created.
 */
export async function up(recipeName: string, opts: UpOptions = {}): Promise<UpResult> {
  const lab = validLabName(opts.lab ?? DEFAULT_LAB);
  const recipe = loadRecipe(recipeName);
  const options = resolveOptions(recipe, opts.options ?? {});
  refuseLiveOnlyAtStart(recipe, opts.options ?? {});
  requireHostDevices(Object.values(effectiveNodes(recipe, options)).flatMap((n) => n.devices));
  const progress = opts.progress;
  const engine = opts.engine ?? (await ensureEngine({ allowSetup: true, yes: opts.yes, progress }));

  const running = await alreadyRunning(engine, recipe, lab, options, progress);
  if (running) return { plan: running, engine, alreadyRunning: true, recipe };

  const created = { any: false };
  try {
    let plan = await planLab(engine, recipe, lab, options);
    throwIfAborted(opts.signal);
    await ensureImages(engine, [...new Set(Object.values(plan.nodes).map((n) => n.image as ImageRole))], progress, opts.signal);
    throwIfAborted(opts.signal);
    // An impairment this kernel cannot do (netem) is refused before anything is created.
    await requireQdiscs(
      recipe,
      inThrowaway(engine, (n) => imageRef(plan.nodes[n]!.image as ImageRole)),
      options,
    );
    created.any = true;
    let ctx: ActionContext = { engine, recipe, plan, captured: {}, progress, signal: opts.signal };
    for (let attempt = 1; ; attempt++) {
      savePlan(plan);
      try {
        await createLab(ctx, opts.labels);
        break;
      } catch (e) {
        // Someone took a subnet between choosing and creating: choose again (not in the default
        // lab, whose subnets are the workshop's own).
        if (!(e instanceof SubnetTakenError) || lab === DEFAULT_LAB || attempt >= 5) throw e;
        await engine.removeLabelled({ lab, recipe: recipe.name });
        plan = await planLab(engine, recipe, lab, options);
        ctx = { ...ctx, plan };
      }
    }
    throwIfAborted(opts.signal);
    await bringUp(ctx);
    return { plan, engine, alreadyRunning: false, recipe };
  } catch (err) {
    if (created.any) {
      await engine.removeLabelled({ lab, recipe: recipe.name }).catch(() => {});
      deletePlan(lab, recipe.name);
    }
    throw err;
  }
}

/**
 * The plan of this lab when it already runs whole with the same options (a start is then a
 * no-op); leftovers of an incomplete earlier start are removed.
 */
async function alreadyRunning(
  engine: Engine,
  recipe: Recipe,
  lab: string,
  options: Record<string, string>,
  progress?: Progress,
): Promise<LabPlan | undefined> {
  const existing = await labContainers(engine, lab, recipe.name);
  const plan = readPlan(lab, recipe.name);
  const whole = plan && existing.length === Object.keys(plan.nodes).length && existing.every((c) => c.state === "running");
  if (existing.length && whole) {
    // Live options may have been changed with `set` since: only start-time choices must match.
    const live = new Set(liveOptions(recipe));
    const fixed = (o: Record<string, string>) => Object.entries(o).filter(([k]) => !live.has(k));
    if (JSON.stringify(fixed(plan.options)) !== JSON.stringify(fixed(options))) {
      const given = fixed(plan.options).map(([k, v]) => `--${k} ${v}`);
      throw new UserError(
        `${recipe.name} is already running in lab "${lab}" with ${given.join(" ")}; stop it first (./start.ts stop ${recipe.name}).`,
      );
    }
    return plan;
  }
  if (existing.length) {
    await stepper(progress)(`remove leftovers of an earlier ${recipe.name} start`, () =>
      engine.removeLabelled({ lab, recipe: recipe.name }),
    );
  }
  return undefined;
}

/** Subnets, keys, the lab's TLS material, and the image roles checked: everything but the engine. */
async function planLab(engine: Engine, recipe: Recipe, lab: string, options: Record<string, string>): Promise<LabPlan> {
  const run = randomBytes(4).toString("hex");
  const subnets = await chooseSubnets(engine, recipe, lab);
  const wg = Object.fromEntries((recipe.wireguard?.keys ?? []).map((n) => [n, genKeyPair()]));
  const plan = makePlan(recipe, lab, options, run, subnets, wg);
  const server = recipe.tls && plan.nodes[recipe.tls.for];
  if (recipe.tls && server) plan.tls = await makeLabTls(server.hostname, Object.values(server.ip), [server.hostname, ...recipe.tls.names]);
  for (const n of Object.values(plan.nodes)) {
    if (!isImageRole(n.image))
      throw new UserError(`Node ${n.key} of ${recipe.name} uses image "${n.image}", which is not one of the images/ roles.`);
  }
  return plan;
}

/** Networks, then containers with their files in place (not started yet). */
async function createLab(ctx: ActionContext, extraLabels: Record<string, string> = {}): Promise<void> {
  const { engine, recipe, plan } = ctx;
  const id = { lab: plan.lab, recipe: recipe.name, run: plan.run };
  const what = `create ${Object.keys(plan.networks).length} networks and ${Object.keys(plan.nodes).length} containers`;
  await stepper(ctx.progress)(what, async (note) => {
    for (const net of Object.values(plan.networks)) {
      note(`network ${net.name} ${net.subnet}`);
      await engine.createNetwork({ ...net, labels: labLabels(id, { ...extraLabels, [LABEL.network]: net.key }) });
    }
    await createNodes(ctx, extraLabels, note);
  });
}

/** The plan's containers on its existing networks, with their files in place (not started yet). */
export async function createContainers(ctx: ActionContext, extraLabels: Record<string, string> = {}): Promise<void> {
  await stepper(ctx.progress)(`create ${Object.keys(ctx.plan.nodes).length} containers`, (note) => createNodes(ctx, extraLabels, note));
}

async function createNodes(ctx: ActionContext, extraLabels: Record<string, string>, note: (s: string) => void): Promise<void> {
  const { engine, recipe, plan } = ctx;
  const id = { lab: plan.lab, recipe: recipe.name, run: plan.run };
  await Promise.all(
    Object.values(plan.nodes).map(async (node) => {
      throwIfAborted(ctx.signal);
      note(`container ${node.container}`);
      await engine.createContainer({
        name: node.container,
        hostname: node.hostname,
        image: imageRef(node.image as ImageRole),
        command: node.command,
        env: { ...node.env, ...gatewayEnv(plan, node) },
        labels: labLabels(id, { ...extraLabels, [LABEL.node]: node.key, [LABEL.options]: JSON.stringify(plan.options) }),
        caps: node.caps,
        sysctls: node.sysctls,
        devices: node.devices,
        networks: Object.entries(node.ip).map(([net, ip]) => ({ name: plan.networks[net]!.name, ip })),
      });
      for (const f of node.files) await engine.putFile(node.container, f.path, renderFile(ctx, f), f.mode);
    }),
  );
}

/** Created containers to a lab where the first exercise begins: start, wait until ready, live options, setup. */
export async function bringUp(ctx: ActionContext): Promise<void> {
  const { engine, plan, recipe, progress } = ctx;
  await stepper(progress)("start containers", () => Promise.all(Object.values(plan.nodes).map((n) => engine.start(n.container))));
  await waitUntilReady(ctx);
  // Live options (a NAT type) take effect before setup, so clients start behind them.
  for (const o of liveOptions(recipe)) await applyOption(ctx, o, progress);
  await runSetup(ctx);
}

/** Poll each node's `ready` condition; a node that stops instead says why, with its log. */
async function waitUntilReady(ctx: ActionContext): Promise<void> {
  const waiting = Object.values(ctx.plan.nodes).filter((n) => n.ready);
  if (!waiting.length) return;
  const title = `wait until ${waiting.map((n) => n.key).join(", ")} ${waiting.length > 1 ? "are" : "is"} ready`;
  await stepper(ctx.progress)(title, async (note) => {
    await Promise.all(
      waiting.map(async (n) => {
        try {
          await pollUntil(ctx, n.container, n.ready!, undefined, 60, `${n.key} to be ready (${n.ready})`, (r) =>
            note(`${n.key}: exit ${r.exitCode}`),
          );
        } catch (e) {
          const state = await ctx.engine.containerState(n.container);
          // A container that stopped says more in its log than the failed exec does.
          const why = state === "running" ? (e as Error).message : `its container ${state === "absent" ? "is gone" : `is ${state}`}`;
          throw new UserError(`${n.container} did not become ready: ${why}.`, 1, await failureDetails(ctx.engine, n));
        }
      }),
    );
  });
}

/** The recipe's setup actions, each a progress step, side by side where they say what they need. */
async function runSetup(ctx: ActionContext): Promise<void> {
  await runByNeeds(ctx.recipe.setup, (a) => runSetupStep(ctx, a));
}

/** One setup action as a progress step (a secret one with a hidden title). */
async function runSetupStep(ctx: ActionContext, a: Action): Promise<void> {
  throwIfAborted(ctx.signal);
  const raw = a.title ?? `${a.node}: ${a.secret ? "(hidden)" : (a.run ?? a.wait ?? a.file?.path ?? "")}`;
  const title = a.title || !a.secret ? renderLoose(raw, scopeOf(ctx.plan, ctx.captured)) : raw;
  await stepper(ctx.progress)(title.length > 90 ? `${title.slice(0, 87)}...` : title, async () => {
    try {
      await runAction(ctx, a);
    } catch (e) {
      if (!(e instanceof UserError) || e.details) throw e;
      throw new UserError(e.message, e.exitCode, await failureDetails(ctx.engine, a.node ? ctx.plan.nodes[a.node] : undefined));
    }
  });
}

export interface DownResult {
  removed: { containers: number; networks: number; volumes: number };
}

/** Stop a lab: remove its containers, networks and volumes (found by label) and its secrets. */
export async function down(engine: Engine, recipe: string, lab = DEFAULT_LAB): Promise<DownResult> {
  const removed = await engine.removeLabelled({ lab, recipe });
  deletePlan(lab, recipe);
  return { removed };
}

export interface NodeStatus {
  node: string;
  container: string;
  /** The engine's container id: a container that was recreated has another. */
  id: string;
  startedAt: string;
  hostname: string;
  state: string;
  addresses: Record<string, string>;
}

export interface LabStatus {
  lab: string;
  recipe: string;
  options: Record<string, string>;
  nodes: NodeStatus[];
}

export async function status(engine: Engine, recipe?: string, lab?: string): Promise<LabStatus[]> {
  const labs = new Map<string, LabStatus>();
  for (const c of await engine.listContainers({ recipe, lab })) {
    const key = `${c.labels[LABEL.lab]}/${c.labels[LABEL.recipe]}`;
    if (!labs.has(key))
      labs.set(key, {
        lab: c.labels[LABEL.lab]!,
        recipe: c.labels[LABEL.recipe]!,
        // The plan has live options as last set; the labels have them as at creation.
        options: readPlan(c.labels[LABEL.lab]!, c.labels[LABEL.recipe]!)?.options ?? optionsOf(c.labels),
        nodes: [],
      });
    const info = await engine.inspect(c.id);
    const addresses = Object.fromEntries(Object.entries(info.addresses).map(([net, ip]) => [net.replace(/^.*_/, ""), ip]));
    labs.get(key)!.nodes.push({
      node: c.labels[LABEL.node]!,
      container: c.name,
      id: c.id,
      startedAt: info.startedAt,
      hostname: info.hostname,
      state: info.state,
      addresses,
    });
  }
  for (const s of labs.values()) s.nodes.sort((a, b) => a.node.localeCompare(b.node));
  return [...labs.values()].sort((a, b) => `${a.lab}/${a.recipe}`.localeCompare(`${b.lab}/${b.recipe}`));
}

function optionsOf(labels: Record<string, string>): Record<string, string> {
  try {
    return JSON.parse(labels[LABEL.options] ?? "{}");
  } catch {
    return {};
  }
}

/** The plan of a running lab, or a clear error when it is not running. */
export async function runningPlan(engine: Engine, recipe: string, lab = DEFAULT_LAB): Promise<LabPlan> {
  loadRecipe(recipe);
  const containers = await labContainers(engine, lab, recipe);
  const plan = readPlan(lab, recipe);
  if (!containers.length || !plan) {
    throw new UserError(
      `${recipe} is not running${lab === DEFAULT_LAB ? "" : ` in lab "${lab}"`}; start it with ./start.ts ${recipe}${lab === DEFAULT_LAB ? "" : ` --lab ${lab}`}.`,
    );
  }
  return plan;
}

export function nodeOf(plan: LabPlan, node: string) {
  const n = plan.nodes[node];
  if (!n) throw new UserError(`${plan.recipe} has no node "${node}"; its nodes are: ${Object.keys(plan.nodes).join(", ")}.`);
  return n;
}
