import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import type { Recipe } from "../recipe/types.ts";
import { labStateDir } from "./plan.ts";

/** Options of a recipe that can change in a running lab (they declare `apply`). */
export function liveOptions(recipe: Recipe): string[] {
  return Object.entries(recipe.options)
    .filter(([, o]) => o.apply.length)
    .map(([k]) => k);
}

/**
 * `nat-b=hard` pairs, checked against the recipe before anything changes: every name must be a
 * live option and every value one of its choices, else one sentence listing the valid ones.
 */
export function parseAssignments(recipe: Recipe, args: string[]): Record<string, string> {
  const live = liveOptions(recipe);
  if (!live.length) throw new UserError(`${recipe.name} has no option that can change while it runs.`, 2);
  const listLive = () => live.map((o) => `${o} (${Object.keys(recipe.options[o]!.choices).join(", ")})`).join("; ");
  if (!args.length) throw new UserError(`set needs OPTION=VALUE; ${recipe.name} can change: ${listLive()}.`, 2);
  const out: Record<string, string> = {};
  for (const a of args) {
    const m = /^([^=]+)=(.*)$/.exec(a);
    if (!m) throw new UserError(`"${a}" is not OPTION=VALUE; ${recipe.name} can change: ${listLive()}.`, 2);
    const [, name, value] = m as unknown as [string, string, string];
    const spec = recipe.options[name];
    if (!spec?.apply.length) throw new UserError(`${recipe.name} has no live option "${name}"; it can change: ${listLive()}.`, 2);
    if (!spec.choices[value])
      throw new UserError(`"${value}" is not a choice of ${name}; the choices are: ${Object.keys(spec.choices).join(", ")}.`, 2);
    out[name] = value;
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * One change at a time per lab: an exclusive lock file holding the changer's pid. A second
 * change while one applies is refused (not queued); a lock left by a process that died is
 * taken over.
 */
export async function withLabLock<T>(lab: string, recipe: string, what: string, fn: () => Promise<T>): Promise<T> {
  const file = join(labStateDir(lab, recipe), "change.lock");
  let fd: number | undefined;
  for (let attempt = 0; attempt < 2 && fd === undefined; attempt++) {
    try {
      fd = openSync(file, "wx", 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const [pid, ...rest] = readFileSync(file, "utf8").split("\n");
      if (pid && alive(Number(pid)) && Number(pid) !== process.pid)
        throw new UserError(
          `${recipe} is already changing (${rest.join(" ").trim() || "another change"}, pid ${pid}); nothing was changed: try again when it is done.`,
          1,
        );
      rmSync(file, { force: true });
    }
  }
  if (fd === undefined) throw new UserError(`Could not take the change lock ${file}.`);
  writeSync(fd, `${process.pid}\n${what}\n`);
  closeSync(fd);
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}
