import { randomBytes } from "node:crypto";
import type { Engine } from "../../src/engine/engine.ts";
import { LABEL } from "../../src/engine/labels.ts";
import { DEFAULT_LAB } from "../../src/lab/plan.ts";

/**
 * Tests never touch what a user runs: every lab a test starts gets a name of its own (prefix
 * "t-", a random suffix), so it has its own container names and subnets, and stopping it can
 * never stop a lab someone else started.
 */
export function testLabName(tag: string): string {
  const suffix = randomBytes(3).toString("hex");
  return `t-${tag.replace(/[^a-z0-9-]/g, "").slice(0, 11)}-${suffix}`;
}

export function isTestLab(lab: string): boolean {
  return lab.startsWith("t-");
}

/** Recipes running in the default lab (the user's, unless this test started them). */
export async function defaultLabsRunning(engine: Engine): Promise<string[]> {
  const containers = await engine.listContainers({ lab: DEFAULT_LAB });
  return [...new Set(containers.map((c) => c.labels[LABEL.recipe] ?? "?"))].sort();
}

/**
 * Why a test that needs the workshop's default lab (its names and subnets) cannot run now, or
 * undefined when it can: it never reuses or stops a default lab it did not start. `recipes`
 * narrows the question to the recipes whose names or subnets the test needs.
 */
export async function defaultLabBusy(engine: Engine, recipes?: string[]): Promise<string | undefined> {
  const running = (await defaultLabsRunning(engine)).filter((r) => !recipes || recipes.includes(r));
  return running.length
    ? `skipped: the default lab runs ${running.join(", ")} (not started by this test); this test needs the workshop's names and never touches a lab it did not start`
    : undefined;
}
