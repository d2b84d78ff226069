import { isAbsolute, join, relative, sep } from "node:path";
import { ROOT } from "../paths.ts";

/**
 * `./start.ts` as the person types it from where they are: the workspace's host pane starts in
 * recipes/<recipe>, where it is `../../start.ts`; outside the checkout, its absolute path.
 */
export function startCommandFrom(cwd: string = process.cwd()): string {
  const inside = !relative(ROOT, cwd).startsWith("..") && !isAbsolute(relative(ROOT, cwd));
  if (!inside) return join(ROOT, "start.ts");
  const rel = relative(cwd, join(ROOT, "start.ts"));
  return rel.startsWith(`..${sep}`) ? rel : `./${rel}`;
}

/** Text that names `./start.ts` (hints, next steps, fixes), with the command as typed from `cwd`. */
export function asTyped(text: string, cwd?: string): string {
  const cmd = startCommandFrom(cwd);
  return cmd === "./start.ts" ? text : text.replace(/(^|[\s`'"(])\.\/start\.ts\b/g, `$1${cmd}`);
}
