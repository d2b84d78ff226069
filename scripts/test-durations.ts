// Writes tests/durations.json (seconds per test file) from the last `npm test` report, for the
// sequencer in tests/support/sequencer.ts. Run after a full run whose files all ran.
import { readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { ROOT } from "../src/paths.ts";

interface Report {
  testResults: { name: string; startTime: number; endTime: number }[];
}
const report = JSON.parse(readFileSync(join(ROOT, ".cache", "test-results.json"), "utf8")) as Report;
const seconds = Object.fromEntries(
  report.testResults
    .map((t) => [relative(ROOT, t.name), Math.round((t.endTime - t.startTime) / 1000)] as const)
    .sort(([a], [b]) => a.localeCompare(b)),
);
writeFileSync(join(ROOT, "tests", "durations.json"), `${JSON.stringify(seconds, null, 2)}\n`);
console.log(`tests/durations.json: ${Object.keys(seconds).length} files`);
