import type { Engine, ExecResult } from "../../src/engine/engine.ts";
import { ensureEngine } from "../../src/engine/ensure.ts";
import { type ActionContext, type CheckResult, checkExercise, runAction } from "../../src/lab/actions.ts";
import { down, up } from "../../src/lab/lifecycle.ts";
import { type LabPlan, readPlan } from "../../src/lab/plan.ts";
import { TailscaleInContainer } from "../../src/nodes/tailscale.ts";
import { loadRecipe } from "../../src/recipe/load.ts";
import { forOptions } from "../../src/recipe/nodes.ts";
import type { Recipe } from "../../src/recipe/types.ts";
import { Progress } from "../../src/ui/progress.ts";
import { type ControlServer, HeadscaleInContainer } from "./control-server.ts";

/**
 * A running lab, for tests and benchmarks: the same lifecycle, checks and solutions as
 * ./start.ts, with typed drivers for its nodes (lab.tailscale(node), lab.controlServer()).
 */
export class LabHandle {
  private constructor(
    readonly engine: Engine,
    readonly recipe: Recipe,
    public plan: LabPlan,
  ) {}

  /**
   * Start a lab that this handle owns. The lab name is required (tests take theirs from
   * tests/support/labs.ts), and a lab that is already running is refused rather than adopted:
   * whoever calls stop() must be the one who started it.
   */
  static async start(recipe: string, opts: { lab: string; options?: Record<string, string> }): Promise<LabHandle> {
    const progress = new Progress(process.stderr, process.env.WG3_VERBOSE === "1", process.env.WG3_VERBOSE !== "1");
    const engine = await ensureEngine({ allowSetup: true, yes: true });
    const r = await up(recipe, { lab: opts.lab, options: opts.options, progress, engine });
    if (r.alreadyRunning) {
      throw new Error(`${recipe} already runs in lab "${opts.lab}", started by someone else: this handle neither reuses nor stops it.`);
    }
    return new LabHandle(engine, forOptions(loadRecipe(recipe), r.plan.options), r.plan);
  }

  /** Read the lab's plan again after a ./start.ts command changed it (a `set`, a `reset`). */
  reloadPlan(): void {
    const plan = readPlan(this.plan.lab, this.recipe.name);
    if (!plan) throw new Error(`lab ${this.plan.lab} has no plan of ${this.recipe.name} any more`);
    this.plan = plan;
  }

  async stop(): Promise<void> {
    await down(this.engine, this.recipe.name, this.plan.lab);
  }

  container(node: string): string {
    const n = this.plan.nodes[node];
    if (!n) throw new Error(`no node ${node} in ${this.recipe.name} (nodes: ${Object.keys(this.plan.nodes).join(", ")})`);
    return n.container;
  }

  ip(node: string, network: string): string {
    return this.plan.nodes[node]!.ip[network]!;
  }

  sh(node: string, script: string): Promise<ExecResult> {
    return this.engine.sh(this.container(node), script);
  }

  /** Does `script` exit 0 on `node`? */
  async succeeds(node: string, script: string): Promise<boolean> {
    return (await this.sh(node, script)).exitCode === 0;
  }

  private ctx(): ActionContext {
    return { engine: this.engine, recipe: this.recipe, plan: this.plan, captured: {} };
  }

  async check(exercise: string): Promise<CheckResult> {
    const ex = this.recipe.exercises.find((e) => e.id === exercise);
    if (!ex) throw new Error(`${this.recipe.name} has no exercise ${exercise}`);
    return checkExercise(this.ctx(), ex);
  }

  async checkAll(): Promise<CheckResult[]> {
    const out: CheckResult[] = [];
    for (const ex of this.recipe.exercises) out.push(await checkExercise(this.ctx(), ex));
    return out;
  }

  async solve(exercise?: string): Promise<void> {
    const ctx = this.ctx();
    for (const ex of this.recipe.exercises) {
      if (exercise && ex.id !== exercise) continue;
      for (const a of ex.solve) await runAction(ctx, a);
    }
  }

  tailscale(node: string): TailscaleInContainer {
    return new TailscaleInContainer(this.engine, this.container(node));
  }

  /** recipe-3's control server, Headscale or the builtin one (--control), driven the same way. */
  controlServer(node = "headscale"): ControlServer {
    return new HeadscaleInContainer(this.engine, this.container(node));
  }
}
