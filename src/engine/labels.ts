/**
 * Every resource the harness creates carries these labels. Cleanup and status find things
 * by label only, never by name, so a user's own containers are never touched.
 */
export const LABEL = {
  project: "wg3ways.project",
  lab: "wg3ways.lab",
  recipe: "wg3ways.recipe",
  node: "wg3ways.node",
  network: "wg3ways.network",
  run: "wg3ways.run",
  inputs: "wg3ways.inputs",
  role: "wg3ways.role",
  /** A lab's option values (JSON), on each of its containers. */
  options: "wg3ways.options",
  /** The classroom a seat's lab belongs to (`classroom up --class NAME`), on its containers and networks. */
  classroom: "wg3ways.classroom",
} as const;

export const PROJECT = "wg-3-ways";

export interface LabIdentity {
  lab: string;
  recipe: string;
  run: string;
}

export function labLabels(id: LabIdentity, extra: Record<string, string> = {}): Record<string, string> {
  return {
    [LABEL.project]: PROJECT,
    [LABEL.lab]: id.lab,
    [LABEL.recipe]: id.recipe,
    [LABEL.run]: id.run,
    ...extra,
  };
}

/** A docker-API `filters` value selecting our resources, optionally narrowed. */
export function labelFilter(match: Partial<Record<"lab" | "recipe" | "node" | "run" | "classroom", string>> = {}): string {
  const labels = [`${LABEL.project}=${PROJECT}`];
  for (const [k, v] of Object.entries(match)) if (v !== undefined) labels.push(`${LABEL[k as keyof typeof LABEL]}=${v}`);
  return JSON.stringify({ label: labels });
}
