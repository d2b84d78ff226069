import { randomBytes } from "node:crypto";
import type { TerminalSession } from "../engine/engine.ts";
import { LABEL } from "../engine/labels.ts";
import { UserError } from "../errors.ts";
import { type ActionContext, checkExercise, runAction } from "../lab/actions.ts";
import { grade } from "../lab/hints.ts";
import { runningPlan } from "../lab/lifecycle.ts";
import { observePaths, tailscaleNodes } from "../lab/paths.ts";
import { readPlan } from "../lab/plan.ts";
import { loadRecipe } from "../recipe/load.ts";
import { effectiveNodes } from "../recipe/nodes.ts";
import type { Recipe } from "../recipe/types.ts";
import type { ClassEngines } from "./engines.ts";
import { resetSeat } from "./seats.ts";
import type { ClassState, Seat } from "./state.ts";

export interface ExerciseView {
  id: string;
  title: string;
  state: "pass" | "not yet";
  hint?: string;
  /** State-aware hints whose probes match now. */
  seen?: string[];
}

export interface NodeView {
  key: string;
  role: string;
  interactive: boolean;
}

/** A seat's lab as it is now, for the facilitator: each node's container state, and for Tailscale recipes each pair's path. */
export interface SeatTopology {
  nodes: { key: string; state: string }[];
  /** As `./start.ts paths` reads them (each client's own `tailscale ping`); none for a recipe without two clients. */
  paths: { from: string; to: string; path: string; via: string }[];
}

/**
 * What the web server may do to a seat, and nothing more: every call names the seat it acts on,
 * which the server has already matched to the request's token. Tests put a fake in its place.
 */
export interface SeatBackend {
  recipe: Recipe;
  nodes(): NodeView[];
  /** The attendee's check: every exercise, one more hint for the first that fails (as `./start.ts check`). */
  check(seat: Seat): Promise<ExerciseView[]>;
  /** The facilitator's view of a seat: pass / not yet only, no hint given away. */
  survey(seat: Seat): Promise<{ id: string; state: "pass" | "not yet" }[]>;
  solve(seat: Seat, exercise: string): Promise<void>;
  /** Which nodes run, and how each pair of Tailscale clients reaches the other. */
  topology(seat: Seat): Promise<SeatTopology>;
  /** Bring the seat's lab back fresh, same token (the facilitator's button). */
  reset(seat: Seat): Promise<void>;
  terminal(seat: Seat, node: string, size: { cols: number; rows: number }): Promise<TerminalSession>;
}

/**
 * bash where the image has it (the workspace's panes use it too), else sh; its pid written to
 * `pidFile` first, so that the shell can be hung up when the browser goes away (the engine
 * leaves an exec's process running when its connection closes: measured with podman 4.3).
 */
function shellCommand(pidFile: string): string[] {
  return ["sh", "-c", `echo $$ > ${pidFile}; cd /root 2>/dev/null; if command -v bash >/dev/null; then exec bash; else exec sh; fi`];
}

/**
 * End everything the closed terminal ran: the engine made its shell a session leader on its own
 * pseudo-terminal, so its session holds the shell and every job started from it. SIGHUP first
 * (what a closed terminal sends), SIGKILL for what ignored it.
 */
function hangUp(pidFile: string): string {
  return `s=$(cat ${pidFile} 2>/dev/null) && [ -n "$s" ] && { pkill -HUP -s "$s"; sleep 2; pkill -KILL -s "$s"; }; rm -f ${pidFile}`;
}

/** The real seats: each one a lab of the recipe, driven through the same machinery as ./start.ts. */
export class LabSeats implements SeatBackend {
  readonly recipe: Recipe;

  constructor(
    private readonly engines: ClassEngines,
    recipeName: string,
    private readonly options: Record<string, string>,
    /** The class as it is now (its seats, for the firewall after a reset). */
    private readonly classState: () => ClassState,
  ) {
    this.recipe = loadRecipe(recipeName);
  }

  nodes(): NodeView[] {
    // Interactive nodes first (the workspace's panes), then the others the guide sends you to.
    const all = Object.entries(effectiveNodes(this.recipe, this.options)).map(([key, n]) => ({
      key,
      role: n.role ?? key,
      interactive: Boolean(n.interactive),
    }));
    return [...all.filter((n) => n.interactive), ...all.filter((n) => !n.interactive)];
  }

  private async ctx(seat: Seat): Promise<ActionContext> {
    const engine = this.engines.of(seat);
    const plan = await runningPlan(engine, this.recipe.name, seat.lab);
    return { engine, recipe: this.recipe, plan, captured: {} };
  }

  async check(seat: Seat): Promise<ExerciseView[]> {
    const results = await grade(await this.ctx(seat));
    return results.map((r) => ({ id: r.id, title: r.title, state: r.state, hint: r.hint, seen: r.mistakes?.map((m) => m.hint) }));
  }

  async survey(seat: Seat): Promise<{ id: string; state: "pass" | "not yet" }[]> {
    const ctx = await this.ctx(seat);
    const out: { id: string; state: "pass" | "not yet" }[] = [];
    for (const ex of this.recipe.exercises) out.push({ id: ex.id, state: (await checkExercise(ctx, ex)).ok ? "pass" : "not yet" });
    return out;
  }

  async solve(seat: Seat, exercise: string): Promise<void> {
    const ex = this.recipe.exercises.find((e) => e.id === exercise);
    if (!ex) throw new UserError(`${this.recipe.name} has no exercise "${exercise}".`, 2);
    const ctx = await this.ctx(seat);
    for (const a of ex.solve) await runAction(ctx, a);
  }

  async topology(seat: Seat): Promise<SeatTopology> {
    const engine = this.engines.of(seat);
    const containers = await engine.listContainers({ lab: seat.lab, recipe: this.recipe.name });
    const stateOf = (key: string) => containers.find((c) => c.labels[LABEL.node] === key)?.state ?? "absent";
    const nodes = this.nodes().map((n) => ({ key: n.key, state: stateOf(n.key) }));
    const plan = readPlan(seat.lab, this.recipe.name);
    const clients = plan ? tailscaleNodes(plan) : [];
    // Paths only where every client runs: a stopped one would only time its pings out.
    if (!plan || clients.length < 2 || clients.some((c) => stateOf(c) !== "running")) return { nodes, paths: [] };
    const report = await observePaths(engine, plan, { netcheck: false });
    return { nodes, paths: report.paths.map((p) => ({ from: p.from, to: p.to, path: p.path, via: p.via })) };
  }

  async reset(seat: Seat): Promise<void> {
    await resetSeat(this.engines, this.classState(), seat);
  }

  async terminal(seat: Seat, node: string, size: { cols: number; rows: number }): Promise<TerminalSession> {
    const plan = (await this.ctx(seat)).plan;
    const n = plan.nodes[node];
    if (!n) throw new UserError(`${this.recipe.name} has no node "${node}".`, 2);
    const pidFile = `/tmp/.wg3-terminal-${randomBytes(6).toString("hex")}.pid`;
    const engine = this.engines.of(seat);
    const session = await engine.terminal(n.container, shellCommand(pidFile), size);
    return {
      ...session,
      close: () => {
        session.close();
        void engine.sh(n.container, hangUp(pidFile), { timeoutMs: 15_000 }).catch(() => {});
      },
    };
  }
}
