import { existsSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * Longest files first, by the seconds each took in a full run (tests/durations.json, written by
 * `npm run test:durations` from the last run's report). vitest's own order needs its cache,
 * which a fresh clone (CI) lacks: it then starts the largest files first, and two of the
 * slowest are three-line files that ran last, alone, for six minutes. With the slowest first
 * the short files fill the gaps at the end.
 */
export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const root = this.ctx.config.root;
    const seconds = recordedSeconds(root);
    const weight = (f: TestSpecification) => seconds[relative(root, f.moduleId)] ?? Number.POSITIVE_INFINITY; // unknown: first
    return [...files].sort(
      (a, b) =>
        a.project.config.sequence.groupOrder - b.project.config.sequence.groupOrder ||
        weight(b) - weight(a) ||
        a.moduleId.localeCompare(b.moduleId),
    );
  }
}

function recordedSeconds(root: string): Record<string, number> {
  const file = join(root, "tests", "durations.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, number>) : {};
}
