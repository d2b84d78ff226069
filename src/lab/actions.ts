import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Engine, ExecResult } from "../engine/engine.ts";
import { UserError } from "../errors.ts";
import { matchesWhen } from "../recipe/nodes.ts";
import { render, renderLoose } from "../recipe/template.ts";
import type { Action, Expect, FileSpec, Recipe } from "../recipe/types.ts";
import { type Progress, stepper } from "../ui/progress.ts";
import { inContainers, requireQdiscs } from "./impairments.ts";
import { withLabLock } from "./live.ts";
import { type LabPlan, savePlan, scopeOf } from "./plan.ts";

export interface ActionContext {
  engine: Engine;
  recipe: Recipe;
  plan: LabPlan;
  /** Values captured by earlier actions (e.g. a pre-auth key); never printed. */
  captured: Record<string, string>;
  progress?: Progress;
  signal?: AbortSignal;
}

export function renderFile(ctx: Pick<ActionContext, "recipe" | "plan" | "captured">, f: FileSpec): string {
  const scope = scopeOf(ctx.plan, ctx.captured);
  if (f.template) return render(readFileSync(join(ctx.recipe.dir, f.template), "utf8"), scope, `${ctx.recipe.name}/${f.template}`);
  return render(f.content ?? "", scope, ctx.recipe.file);
}

export function meets(r: ExecResult, expect: Expect | undefined): boolean {
  if (!expect) return r.exitCode === 0;
  if (expect.exit !== undefined && r.exitCode !== expect.exit) return false;
  if (expect.exit === undefined && (expect.stdoutContains !== undefined || expect.stdoutMatches !== undefined) && r.exitCode !== 0)
    return false;
  if (expect.stdoutContains !== undefined && !r.stdout.includes(expect.stdoutContains)) return false;
  if (expect.stdoutMatches !== undefined && !new RegExp(expect.stdoutMatches, "m").test(r.stdout)) return false;
  return true;
}

function containerOf(ctx: ActionContext, a: Action): string {
  const node = a.node ? ctx.plan.nodes[a.node] : undefined;
  if (!node) throw new UserError(`Node "${a.node}" is not part of this lab (nodes: ${Object.keys(ctx.plan.nodes).join(", ")}).`);
  return node.container;
}

function describe(a: Action, cmd: string, scope: Record<string, unknown>): string {
  return a.title ? renderLoose(a.title, scope) : a.secret ? `${a.node}: (command hidden: it carries a secret)` : `${a.node}: ${cmd}`;
}

function tail(r: ExecResult): string {
  return `${r.stdout}\n${r.stderr}`.trim().split("\n").slice(-6).join("\n");
}

async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        reject(new UserError("Interrupted.", 130));
      },
      { once: true },
    );
  });
}

/** Poll a shell condition in a container until it holds or the deadline passes. */
export async function pollUntil(
  ctx: ActionContext,
  container: string,
  script: string,
  expect: Expect | undefined,
  timeoutS: number,
  what: string,
  onTick?: (r: ExecResult) => void,
): Promise<ExecResult> {
  const deadline = Date.now() + timeoutS * 1000;
  let last: ExecResult = { exitCode: -1, stdout: "", stderr: "(not run yet)" };
  let delay = 100;
  while (true) {
    if (ctx.signal?.aborted) throw new UserError("Interrupted.", 130);
    last = await ctx.engine.sh(container, script, { timeoutMs: Math.max(5000, timeoutS * 1000) });
    onTick?.(last);
    if (meets(last, expect)) return last;
    if (Date.now() > deadline) {
      throw new UserError(
        `Timed out after ${timeoutS}s waiting for ${what}; last seen (exit ${last.exitCode}): ${tail(last) || "(no output)"}`,
      );
    }
    await sleep(delay, ctx.signal);
    delay = Math.min(delay * 2, 1000);
  }
}

/** Run one recipe action (setup or solve). Throws a UserError with the last output on failure. */
export async function runAction(ctx: ActionContext, a: Action): Promise<ExecResult | undefined> {
  if (!matchesWhen(a.when, ctx.plan.options)) return undefined;
  if (a.set) {
    await setOptions(ctx, a.set, ctx.progress);
    return undefined;
  }
  const container = containerOf(ctx, a);
  const scope = scopeOf(ctx.plan, ctx.captured);
  if (a.file) {
    const content = renderFile(ctx, a.file);
    const path = render(a.file.path, scope, ctx.recipe.file);
    await ctx.engine.putFile(container, path, content, a.file.mode);
    return undefined;
  }
  if (a.wait) {
    const cmd = render(a.wait, scope, ctx.recipe.file);
    return pollUntil(ctx, container, cmd, a.expect, a.timeout, describe(a, cmd, scope), (r) =>
      ctx.progress?.detail(`${a.node}$ ${a.secret ? "(hidden)" : cmd} -> ${r.exitCode}`),
    );
  }
  const cmd = render(a.run!, scope, ctx.recipe.file);
  const r = await ctx.engine.sh(container, cmd, { timeoutMs: a.timeout * 1000 });
  ctx.progress?.detail(`${a.node}$ ${a.secret ? "(hidden)" : cmd}\n${a.secret ? "" : tail(r)}`);
  if (!meets(r, a.expect))
    throw new UserError(
      `${describe(a, cmd, scope)} failed (exit ${r.exitCode}): ${a.secret ? "(output hidden)" : tail(r) || "(no output)"}`,
    );
  if (a.capture) {
    let value = r.stdout.trim();
    if (a.capture.json) {
      let v: unknown = JSON.parse(value);
      for (const part of a.capture.json.split(".")) v = (v as Record<string, unknown>)?.[part];
      value = String(v ?? "");
    }
    if (!value) throw new UserError(`${describe(a, cmd, scope)} printed nothing to capture as ${a.capture.as}.`);
    ctx.captured[a.capture.as] = value;
  }
  return r;
}

/** One exercise's reference solution as a progress step; an exercise without one does nothing. */
export async function solveExercise(ctx: ActionContext, ex: Recipe["exercises"][number]): Promise<void> {
  if (!ex.solve.length) return;
  await stepper(ctx.progress)(`solve ${ex.id}: ${renderLoose(ex.title, scopeOf(ctx.plan, ctx.captured))}`, async () => {
    for (const a of ex.solve) await runAction(ctx, a);
  });
}

export interface CheckResult {
  exercise: string;
  title: string;
  ok: boolean;
  hint: string;
  detail?: string;
}

/** Evaluate one exercise's checks once (no waiting): all must hold. */
export async function checkExercise(ctx: ActionContext, ex: Recipe["exercises"][number]): Promise<CheckResult> {
  const title = renderLoose(ex.title, scopeOf(ctx.plan, ctx.captured));
  for (const a of ex.check) {
    if (!matchesWhen(a.when, ctx.plan.options)) continue;
    const container = containerOf(ctx, a);
    const scope = scopeOf(ctx.plan, ctx.captured);
    const cmd = render(a.run ?? a.wait ?? "true", scope, ctx.recipe.file);
    // A `wait` in a check is a condition that takes a moment by nature (bytes arriving): poll it.
    const r = a.wait
      ? await pollUntil(ctx, container, cmd, a.expect, a.timeout, cmd).catch(
          (e: Error): ExecResult => ({ exitCode: -1, stdout: "", stderr: e.message }),
        )
      : await ctx.engine
          .sh(container, cmd, { timeoutMs: Math.max(10_000, a.timeout * 1000) })
          .catch((e: Error): ExecResult => ({ exitCode: -1, stdout: "", stderr: e.message }));
    if (!meets(r, a.expect))
      return {
        exercise: ex.id,
        title,
        ok: false,
        hint: ex.hint,
        // check --json prints this: a secret action's command and output stay hidden, as in progress output.
        detail: a.secret ? `${a.node}$ (hidden) -> exit ${r.exitCode}` : `${a.node}$ ${cmd} -> exit ${r.exitCode} ${tail(r)}`.slice(0, 400),
      };
  }
  return { exercise: ex.id, title, ok: true, hint: ex.hint };
}

/** Run one option's `apply` actions for the value now in ctx.plan.options. */
export async function applyOption(ctx: ActionContext, option: string, progress?: Progress): Promise<void> {
  const spec = ctx.recipe.options[option];
  if (!spec) throw new UserError(`${ctx.recipe.name} has no option "${option}".`);
  await stepper(progress)(`apply ${option}=${ctx.plan.options[option]}`, async () => {
    for (const a of spec.apply) await runAction(ctx, a);
  });
}

/**
 * Change live options of a running lab: lock, record the new values in the plan only once
 * every option's actions succeeded (the plan says what was applied), run the actions.
 */
export async function setOptions(ctx: ActionContext, values: Record<string, string>, progress?: Progress): Promise<string[]> {
  const { plan } = ctx;
  const what = Object.entries(values)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  return withLabLock(plan.lab, plan.recipe, what, async () => {
    await requireQdiscs(
      ctx.recipe,
      inContainers(ctx.engine, (n) => plan.nodes[n]!.container),
      values,
    );
    const changed: string[] = [];
    for (const [name, value] of Object.entries(values)) {
      const before = plan.options[name];
      plan.options[name] = value;
      try {
        await applyOption(ctx, name, progress);
      } catch (e) {
        // The router's rules are replaced by one `nft -f` transaction, so a failed apply left
        // the old ruleset in place: the plan keeps saying the old value.
        plan.options[name] = before!;
        throw e;
      }
      savePlan(plan);
      changed.push(`${name}=${value}`);
    }
    return changed;
  });
}
