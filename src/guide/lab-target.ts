import { spawn } from "node:child_process";
import type { Engine } from "../engine/engine.ts";
import { type ActionContext, runAction } from "../lab/actions.ts";
import { DEFAULT_LAB, type LabPlan, makePlan, prefixFor, resolveOptions } from "../lab/plan.ts";
import { ROOT } from "../paths.ts";
import type { Recipe } from "../recipe/types.ts";
import type { GuideTarget, Held, Ran } from "./run.ts";

const STEP_TIMEOUT_MS = 60_000;

/** The default lab's names and addresses -> this lab's (containers, networks, subnets, IPs). */
export function renames(recipe: Recipe, plan: LabPlan): [string, string][] {
  const def = makePlan(recipe, DEFAULT_LAB, resolveOptions(recipe, plan.options), plan.run);
  const pairs: [string, string][] = [];
  for (const [k, n] of Object.entries(def.networks)) {
    pairs.push([n.name, plan.networks[k]!.name], [n.subnet, plan.networks[k]!.subnet]);
  }
  for (const [k, n] of Object.entries(def.nodes)) {
    pairs.push([n.container, plan.nodes[k]!.container]);
    for (const [net, ip] of Object.entries(n.ip)) pairs.push([ip, plan.nodes[k]!.ip[net]!]);
  }
  return pairs.filter(([a, b]) => a !== b).sort((a, b) => b[0].length - a[0].length);
}

/** Replace whole names only: 10.1.99.1 is not the start of 10.1.99.10, recipe-1_home not of wg-recipe-1_home-router. */
export function translator(pairs: [string, string][]): (text: string) => string {
  if (!pairs.length) return (t) => t;
  const to = new Map(pairs);
  const alt = pairs.map(([a]) => a.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")).join("|");
  const re = new RegExp(`(?<![\\w.-])(${alt})(?![\\w-]|\\.\\d)`, "g");
  return (t) => t.replace(re, (m) => to.get(m) ?? m);
}

/**
 * The host pane's commands for another lab: `./start.ts <verb> <this recipe>` gets --lab, and a
 * container named to the engine gets the lab's prefix even when the guide builds the name in a
 * loop (`wg-recipe-0_peer-$n`).
 */
export function withLab(text: string, lab: string, recipe: string): string {
  if (lab === DEFAULT_LAB) return text;
  const prefix = prefixFor(lab);
  return text
    .replace(new RegExp(`(\\./start\\.ts\\s+(?:[a-z]+\\s+)?${recipe})(?![\\w-])`, "g"), `$1 --lab ${lab}`)
    .replace(
      /\b((?:podman|docker)\s+(?:container\s+)?(?:exec|logs)(?:\s+-\w+)*\s+)(?!-)(?!\S*\$\{?lab)(\S+)/g,
      (m, cmd: string, name: string) => (name.startsWith(prefix) ? m : `${cmd}${prefix}${name}`),
    );
}

function hostRun(script: string): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn("bash", ["-c", `exec 2>&1\n${script}`], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (b: Buffer) => {
      output += b.toString("utf8");
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), STEP_TIMEOUT_MS);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ exitCode: code ?? -1, output });
    });
  });
}

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A held command in the host pane: a process group of its own, so Ctrl-C (SIGINT to the group) reaches all of it. */
export function hostHold(script: string, typed?: string): Held {
  const child = spawn("bash", ["-c", `exec 2>&1\n${script}`], {
    cwd: ROOT,
    detached: true,
    stdio: [typed === undefined ? "ignore" : "pipe", "pipe", "ignore"],
  });
  // Like a pane: the typed line, and stdin left open.
  if (typed !== undefined) child.stdin?.write(`${typed}\n`);
  let output = "";
  child.stdout?.on("data", (b: Buffer) => {
    output += b.toString("utf8");
  });
  const closed = new Promise<void>((r) => child.on("close", () => r()));
  const endsWithin = (ms: number) => Promise.race([closed.then(() => true), delay(ms).then(() => false)]);
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      // already ended
    }
  };
  return {
    output: async () => output,
    interrupt: async () => {
      signal("SIGINT");
      if (!(await endsWithin(10_000))) {
        signal("SIGKILL");
        await closed;
      }
      return output;
    },
    ended: async (ms) => ((await endsWithin(ms)) ? output : undefined),
  };
}

// A held command runs in a session of its own, so Ctrl-C (SIGINT to the group) reaches all of it.
const HOLD = `out=/tmp/wg3-guide-$$.out
if [ -n "\${GUIDE_TYPED+x}" ]; then
  setsid bash -c '{ printf "%s\\n" "$GUIDE_TYPED"; exec sleep 3600; } | bash -c "$GUIDE_SCRIPT"' >"$out" 2>&1 </dev/null &
else
  setsid bash -c "$GUIDE_SCRIPT" >"$out" 2>&1 </dev/null &
fi
echo "$! $out"`;

// Still running, and not a zombie: a container's init (headscale, tailscaled) does not reap, so kill -0 alone would say yes.
const ALIVE = (pid: string) => `[ "$(cut -d' ' -f3 /proc/${pid}/stat 2>/dev/null || echo Z)" != Z ]`;

const INTERRUPT = (pid: string) =>
  `kill -INT -- -${pid} 2>/dev/null; for i in $(seq 100); do ${ALIVE(pid)} || exit 0; sleep 0.1; done; kill -KILL -- -${pid}`;

/** A running lab of the guide's recipe: nodes through the engine, the host pane in the repository root. */
export class LabTarget implements GuideTarget {
  readonly #tr: (t: string) => string;

  constructor(
    readonly engine: Engine,
    readonly recipe: Recipe,
    readonly plan: LabPlan,
  ) {
    this.#tr = translator(renames(recipe, plan));
  }

  translate(text: string, on: string): string {
    const t = this.#tr(text);
    return on === "host" ? withLab(t, this.plan.lab, this.recipe.name) : t;
  }

  #container(on: string): string {
    const n = this.plan.nodes[on];
    if (!n) throw new Error(`the guide names node "${on}", which ${this.recipe.name} does not have`);
    return n.container;
  }

  async run(on: string, script: string): Promise<Ran> {
    if (on === "host") return hostRun(script);
    const r = await this.engine.exec(this.#container(on), ["bash", "-c", `exec 2>&1\n${script}`], { timeoutMs: STEP_TIMEOUT_MS });
    return { exitCode: r.exitCode, output: r.stdout };
  }

  async hold(on: string, script: string, typed?: string): Promise<Held> {
    if (on === "host") return hostHold(script, typed);
    const c = this.#container(on);
    const env: Record<string, string> = { GUIDE_SCRIPT: script, ...(typed === undefined ? {} : { GUIDE_TYPED: typed }) };
    const [pid, out] = (await this.engine.output(c, ["bash", "-c", HOLD], { env })).trim().split(" ");
    const read = async () => (await this.engine.exec(c, ["cat", out!])).stdout;
    return {
      output: read,
      interrupt: async () => {
        await this.engine.exec(c, ["bash", "-c", INTERRUPT(pid!)]);
        return read();
      },
      ended: async (ms) => {
        const deadline = Date.now() + ms;
        while ((await this.engine.exec(c, ["bash", "-c", ALIVE(pid!)])).exitCode === 0) {
          if (Date.now() >= deadline) return undefined;
          await delay(200);
        }
        return read();
      },
    };
  }

  async solve(exercise: string): Promise<void> {
    const ex = this.recipe.exercises.find((e) => e.id === exercise);
    if (!ex) throw new Error(`the guide replaces a block by the solution of "${exercise}", which ${this.recipe.name} does not have`);
    const ctx: ActionContext = { engine: this.engine, recipe: this.recipe, plan: this.plan, captured: {} };
    for (const a of ex.solve) await runAction(ctx, a);
  }
}
