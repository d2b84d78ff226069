/**
 * Config templates: plain text with `{{ dotted.path }}` placeholders, nothing else. No logic,
 * so a template reads like the file it becomes. An unknown name is an error naming file:line.
 */
export class TemplateError extends Error {}

export type Scope = Record<string, unknown>;

export function lookup(scope: Scope, path: string): unknown {
  let cur: unknown = scope;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object" || !(part in (cur as Record<string, unknown>))) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

export function render(text: string, scope: Scope, file = "<inline>"): string {
  return text.replace(/\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g, (_m, path: string, offset: number) => {
    const v = lookup(scope, path);
    if (v === undefined || v === null || typeof v === "object") {
      const line = text.slice(0, offset).split("\n").length;
      throw new TemplateError(`${file}:${line}: {{ ${path} }} is not defined${hint(scope, path)}`);
    }
    return String(v);
  });
}

function hint(scope: Scope, path: string): string {
  const parts = path.split(".");
  const parent = lookup(scope, parts.slice(0, -1).join("."));
  if (parts.length > 1 && parent && typeof parent === "object") return ` (known here: ${Object.keys(parent).join(", ")})`;
  return ` (known: ${Object.keys(scope).join(", ")})`;
}

/** Names a template uses, for validating templates without rendering them. */
export function placeholders(text: string): string[] {
  return [...text.matchAll(/\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g)].map((m) => m[1]!);
}

/** For titles and hints shown to people: fill what is known, leave the rest as written. */
export function renderLoose(text: string, scope: Scope): string {
  try {
    return render(text, scope);
  } catch {
    return text;
  }
}
