import { randomBytes } from "node:crypto";
import type Docker from "dockerode";
import type { Engine } from "../engine/engine.ts";
import { LABEL, labLabels } from "../engine/labels.ts";
import { requireHostDevices } from "../engine/preflight.ts";
import { ensureEngine } from "../engine/setup.ts";
import { usedSubnets } from "../engine/subnets.ts";
import { UserError } from "../errors.ts";
import { ensureImages, type ImageRole, imageRef, isImageRole } from "../images/build.ts";
import { cidrsOverlap, loadRecipe } from "../recipe/load.ts";
import { effectiveNodes } from "../recipe/nodes.ts";
import { renderLoose } from "../recipe/template.ts";
import type { Recipe } from "../recipe/types.ts";
import { type Progress, stepper } from "../ui/progress.ts";
import { genKeyPair } from "../wireguard/keys.ts";
import { type ActionContext, pollUntil, putFile, renderFile, runAction } from "./actions.ts";
import { DEFAULT_LAB, deletePlan, type LabPlan, makePlan, readPlan, resolveOptions, savePlan, scopeOf, validLabName } from "./plan.ts";
import { makeLabTls } from "./tls.ts";

export interface UpOptions {
  lab?: string;
  options?: Record<string, string | undefined>;
  progress?: Progress;
  signal?: AbortSignal;
  yes?: boolean;
  engine?: Engine;
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
  const out: Record<string, string> = {};
  const taken = used.map((u) => u.subnet);
  for (const key of Object.keys(recipe.networks)) {
    let found: string | undefined;
    for (let i = 0; i < 256 && !found; i++) {
      const cand = `10.213.${i}.0/24`;
      if (!taken.some((t) => cidrsOverlap(t, cand))) found = cand;
    }
    if (!found) throw new UserError("No free /24 is left in 10.213.0.0/16 for another lab; stop a lab first.");
    out[key] = found;
    taken.push(found);
  }
  return out;
}

/** WG3_GATEWAY for the image's init: the gateway node's address on the first network both share. */
function gatewayEnv(plan: LabPlan, node: LabPlan["nodes"][string]): Record<string, string> {
  const gw = node.gateway ? plan.nodes[node.gateway] : undefined;
  const shared = gw && Object.keys(node.ip).find((net) => gw.ip[net]);
  return gw && shared ? { WG3_GATEWAY: gw.ip[shared]! } : {};
}

export async function labContainers(engine: Engine, lab: string, recipe?: string): Promise<Docker.ContainerInfo[]> {
  return engine.listContainers({ lab, recipe });
}

/** What to show when a step on a node fails: its `diagnose` command's output and its log tail. */
async function diagnosis(engine: Engine, node: LabPlan["nodes"][string] | undefined): Promise<string | undefined> {
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
  requireHostDevices(Object.values(effectiveNodes(recipe, options)).flatMap((n) => n.devices));
  const progress = opts.progress;
  const step = stepper(progress);
  const engine = opts.engine ?? (await ensureEngine({ allowSetup: true, yes: opts.yes, progress }));

  const existing = await labContainers(engine, lab, recipe.name);
  const existingPlan = readPlan(lab, recipe.name);
  if (
    existing.length &&
    existingPlan &&
    existing.length === Object.keys(existingPlan.nodes).length &&
    existing.every((c) => c.State === "running")
  ) {
    const sameOptions = JSON.stringify(existingPlan.options) === JSON.stringify(options);
    if (!sameOptions) {
      throw new UserError(
        `${recipe.name} is already running in lab "${lab}" with ${Object.entries(existingPlan.options)
          .map(([k, v]) => `--${k} ${v}`)
          .join(" ")}; stop it first (./start.ts stop ${recipe.name}).`,
      );
    }
    return { plan: existingPlan, engine, alreadyRunning: true, recipe };
  }
  if (existing.length) {
    await step(`remove leftovers of an earlier ${recipe.name} start`, async () => {
      await engine.removeLabelled({ lab, recipe: recipe.name });
    });
  }

  const run = randomBytes(4).toString("hex");
  const created = { any: false };
  try {
    const subnets = await chooseSubnets(engine, recipe, lab);
    const wg = Object.fromEntries((recipe.wireguard?.keys ?? []).map((n) => [n, genKeyPair()]));
    const plan = makePlan(recipe, lab, options, run, subnets, wg);
    if (recipe.tls) {
      const server = plan.nodes[recipe.tls.for];
      if (server) plan.tls = await makeLabTls(server.hostname, Object.values(server.ip), [server.hostname, ...recipe.tls.names]);
    }
    for (const n of Object.values(plan.nodes)) {
      if (!isImageRole(n.image))
        throw new UserError(`Node ${n.key} of ${recipe.name} uses image "${n.image}", which is not one of the images/ roles.`);
    }
    throwIfAborted(opts.signal);
    const roles = [...new Set(Object.values(plan.nodes).map((n) => n.image as ImageRole))];
    await ensureImages(engine, roles, progress, opts.signal);
    throwIfAborted(opts.signal);

    savePlan(plan);
    created.any = true;
    await step(`create ${Object.keys(plan.networks).length} networks and ${Object.keys(plan.nodes).length} containers`, async (note) => {
      for (const net of Object.values(plan.networks)) {
        note(`network ${net.name} ${net.subnet}`);
        await engine.createNetwork({
          ...net,
          labels: labLabels({ lab, recipe: recipe.name, run }, { [LABEL.network]: net.key }),
        });
      }
      await Promise.all(
        Object.values(plan.nodes).map(async (node) => {
          throwIfAborted(opts.signal);
          const nets = Object.keys(node.ip);
          const first = nets[0]!;
          note(`container ${node.container}`);
          const c = await engine.docker.createContainer({
            name: node.container,
            Hostname: node.hostname,
            Image: imageRef(node.image as ImageRole),
            Cmd: node.command,
            Env: Object.entries({ ...node.env, ...gatewayEnv(plan, node) }).map(([k, v]) => `${k}=${v}`),
            Tty: true,
            OpenStdin: true,
            StopTimeout: 3,
            Labels: labLabels({ lab, recipe: recipe.name, run }, { [LABEL.node]: node.key, "wg3ways.options": JSON.stringify(options) }),
            HostConfig: {
              NetworkMode: plan.networks[first]!.name,
              CapAdd: node.caps,
              Sysctls: node.sysctls,
              Devices: node.devices.map((d) => ({
                PathOnHost: d,
                PathInContainer: d,
                CgroupPermissions: "rwm",
              })),
            },
            NetworkingConfig: {
              EndpointsConfig: {
                [plan.networks[first]!.name]: { IPAMConfig: { IPv4Address: node.ip[first] } },
              },
            },
          });
          for (const net of nets.slice(1)) {
            await engine.docker.getNetwork(plan.networks[net]!.name).connect({
              Container: c.id,
              EndpointConfig: { IPAMConfig: { IPv4Address: node.ip[net] } },
            });
          }
          const ctx = { recipe, plan, captured: {} };
          for (const f of node.files) await putFile(engine, node.container, f.path, renderFile(ctx, f), f.mode);
        }),
      );
    });
    throwIfAborted(opts.signal);
    await step("start containers", async () => {
      await Promise.all(Object.values(plan.nodes).map((n) => engine.docker.getContainer(n.container).start()));
    });
    const ctx: ActionContext = { engine, recipe, plan, captured: {}, progress, signal: opts.signal };
    const waiting = Object.values(plan.nodes).filter((n) => n.ready);
    if (waiting.length) {
      await step(`wait until ${waiting.map((n) => n.key).join(", ")} ${waiting.length > 1 ? "are" : "is"} ready`, async (note) => {
        await Promise.all(
          waiting.map(async (n) => {
            try {
              await pollUntil(ctx, n.container, n.ready!, undefined, 60, `${n.key} to be ready (${n.ready})`, (r) =>
                note(`${n.key}: exit ${r.exitCode}`),
              );
            } catch (e) {
              const state = await engine.containerState(n.container);
              // A container that stopped says more in its log than the failed exec does.
              const why = state === "running" ? (e as Error).message : `its container ${state === "absent" ? "is gone" : `is ${state}`}`;
              throw new UserError(`${n.container} did not become ready: ${why}.`, 1, await diagnosis(engine, n));
            }
          }),
        );
      });
    }
    for (const a of recipe.setup) {
      throwIfAborted(opts.signal);
      const raw = a.title ?? `${a.node}: ${a.secret ? "(hidden)" : (a.run ?? a.wait ?? a.file?.path ?? "")}`;
      const title = a.title || !a.secret ? renderLoose(raw, scopeOf(plan, ctx.captured)) : raw;
      await step(title.length > 90 ? `${title.slice(0, 87)}...` : title, async () => {
        try {
          await runAction(ctx, a);
        } catch (e) {
          if (!(e instanceof UserError) || e.details) throw e;
          throw new UserError(e.message, e.exitCode, await diagnosis(engine, plan.nodes[a.node]));
        }
      });
    }
    return { plan, engine, alreadyRunning: false, recipe };
  } catch (err) {
    if (created.any) {
      await engine.removeLabelled({ lab, recipe: recipe.name }).catch(() => {});
      deletePlan(lab, recipe.name);
    }
    throw err;
  }
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
  const containers = await engine.listContainers({ recipe, lab });
  const labs = new Map<string, LabStatus>();
  for (const c of containers) {
    const l = c.Labels[LABEL.lab]!;
    const r = c.Labels[LABEL.recipe]!;
    const key = `${l}/${r}`;
    if (!labs.has(key)) {
      let options: Record<string, string> = {};
      try {
        options = JSON.parse(c.Labels["wg3ways.options"] ?? "{}");
      } catch {}
      labs.set(key, { lab: l, recipe: r, options, nodes: [] });
    }
    const info = await engine.docker.getContainer(c.Id).inspect();
    const addresses: Record<string, string> = {};
    for (const [net, v] of Object.entries(info.NetworkSettings.Networks ?? {})) addresses[net.replace(/^.*_/, "")] = v.IPAddress;
    labs.get(key)!.nodes.push({
      node: c.Labels[LABEL.node]!,
      container: (c.Names[0] ?? "").replace(/^\//, ""),
      id: c.Id,
      startedAt: info.State.StartedAt,
      hostname: info.Config.Hostname,
      state: info.State.Status,
      addresses,
    });
  }
  for (const s of labs.values()) s.nodes.sort((a, b) => a.node.localeCompare(b.node));
  return [...labs.values()].sort((a, b) => `${a.lab}/${a.recipe}`.localeCompare(`${b.lab}/${b.recipe}`));
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
