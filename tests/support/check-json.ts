import type { LabHandle } from "./lab-handle.ts";
import { startTs } from "./start-ts.ts";

/** One exercise as `./start.ts check --json` grades it. */
export interface Graded {
  id: string;
  state: string;
  hint?: string;
  hintsShown?: string[];
  hintCount: number;
  mistakes?: { node: string; hint: string }[];
}

/** `./start.ts check --json` (of every exercise, or of those named), as a tool reads it: exercise id -> its grade. */
export async function checkJson(lab: LabHandle, ...exercises: string[]): Promise<Record<string, Graded>> {
  const r = await startTs(["check", lab.recipe.name, ...exercises, "--lab", lab.plan.lab, "--json"]);
  if (!r.stdout.trim()) throw new Error(`check --json printed nothing (exit ${r.code}, signal ${r.signal}, ${r.ms} ms): ${r.stderr}`);
  const json = JSON.parse(r.stdout) as { exercises: Graded[] };
  return Object.fromEntries(json.exercises.map((x) => [x.id, x]));
}

/** The state-aware hints an exercise shows now (`check EXERCISE --json`: that exercise alone is graded). */
export async function mistakesShown(lab: LabHandle, exercise: string): Promise<string[]> {
  return ((await checkJson(lab, exercise))[exercise]?.mistakes ?? []).map((m) => m.hint);
}

/** A script in a node that must succeed; its stdout. */
export async function mustRun(lab: LabHandle, node: string, script: string): Promise<string> {
  const r = await lab.sh(node, script);
  if (r.exitCode !== 0) throw new Error(`${node}: ${script} exited ${r.exitCode}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}
