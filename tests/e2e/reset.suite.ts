import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveOptions } from "../../src/lab/plan.ts";
import { loadRecipe } from "../../src/recipe/load.ts";
import { forOptions } from "../../src/recipe/nodes.ts";
import type { Recipe } from "../../src/recipe/types.ts";
import { createSession, killSession, sessionName } from "../../src/workspace/tmux.ts";
import { eventually } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";
import { startTs } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

type Exercise = Recipe["exercises"][number];

export interface ResetCase {
  recipe: string;
  /** Start options of the lab (recipe-4 starts behind a hard NAT, so its first stage is not done at the start). */
  options?: Record<string, string>;
  /**
   * The exercises are stages of one setting (recipe-4's NAT types): each solve sets its own, so
   * at each stage only the one just before still passes, not every earlier one.
   */
  staged?: string;
  /** Open the lab's tmux workspace first and show that the first reset keeps it (one file does). */
  workspace?: boolean;
}

/**
 * An exercise that changes the lab: its reference solution does something (a file, a command, a
 * `set`, or pings whose handshakes the check reads as evidence). The others only look: no
 * solve, or a check that sends its own probe (`probes: true`) with a solve that only waits for
 * it; their check passes as soon as the earlier exercises are done.
 */
export function changesLab(ex: Exercise): boolean {
  return ex.solve.some((a) => !a.wait) || (ex.solve.length > 0 && !ex.probes);
}

/**
 * For every exercise of a recipe, on one lab reused throughout: `./start.ts reset --to` it, then
 * the earlier exercises pass and it does not (nor any later one that changes the lab); after
 * its solve it passes and no later exercise that changes the lab does.
 */
export function resetSuite(c: ResetCase): void {
  const recipe = forOptions(loadRecipe(c.recipe), resolveOptions(loadRecipe(c.recipe), c.options ?? {}));
  const optionsText = Object.entries(c.options ?? {}).map(([k, v]) => ` --${k} ${v}`);
  describe(`reset ${c.recipe}${optionsText.join("")} --to each exercise`, () => {
    let lab: LabHandle;
    const labName = testLabName(`rs-${c.recipe.replace("recipe-", "r")}`);
    const timings: string[] = [];
    const ok = async (id: string) => {
      const r = await lab.check(id);
      return [id, r.ok, r.detail ?? ""] as const;
    };
    const passes = async (ids: string[]) =>
      expect((await Promise.all(ids.map(ok))).map(([id, v]) => [id, v])).toEqual(ids.map((id) => [id, true]));
    const fail = async (ids: string[]) => {
      for (const id of ids) expect((await lab.check(id)).ok, `${id} should not pass yet`).toBe(false);
    };

    let panesBefore: Pane[] = [];

    beforeAll(async () => {
      lab = await LabHandle.start(c.recipe, { lab: labName, options: c.options });
      if (c.workspace) {
        await createSession(lab.engine, lab.plan);
        panesBefore = await panes(lab);
      }
    });
    afterAll(async () => {
      if (c.workspace && lab) await killSession(lab.plan.lab, lab.plan.recipe);
      await lab?.stop();
      if (timings.length) console.log(`reset ${c.recipe}${optionsText.join("")}, seconds per reset:\n${timings.join("\n")}`);
    }, TIMEOUT.teardown);

    recipe.exercises.forEach((ex, i) => {
      const earlier = recipe.exercises.slice(0, i).map((e) => e.id);
      const laterChanging = recipe.exercises
        .slice(i + 1)
        .filter(changesLab)
        .map((e) => e.id);
      const title = changesLab(ex)
        ? `--to ${ex.id}: ${earlier.length ? `${earlier.join(", ")} pass; ` : ""}${ex.id} does not until solved, and its solve solves no later exercise`
        : `--to ${ex.id}: ${earlier.join(", ")} pass, and ${ex.id}, which only looks at what they did, passes too`;
      it(
        title,
        async () => {
          const before = lab.plan;
          const r = await startTs(["reset", c.recipe, "--to", ex.id, "--lab", labName], { timeoutMs: TIMEOUT.cli * 2 });
          expect(r.code, r.stderr).toBe(0);
          const secs = /is reset in ([\d.]+)s/.exec(r.stderr)?.[1];
          expect(secs, r.stderr).toBeDefined();
          timings.push(`  --to ${ex.id.padEnd(16)} ${secs} (replayed ${earlier.length})`);
          lab.reloadPlan();
          // The same lab: names, subnets, keys and options (a live one as the solves set it) stay.
          expect(Object.fromEntries(Object.values(lab.plan.nodes).map((n) => [n.key, [n.container, n.ip]]))).toEqual(
            Object.fromEntries(Object.values(before.nodes).map((n) => [n.key, [n.container, n.ip]])),
          );
          expect(lab.plan.wg).toEqual(before.wg);
          if (i === 0 && c.workspace) await workspaceKept(lab, panesBefore);

          await passes(c.staged && earlier.length ? [earlier.at(-1)!] : earlier);
          if (!changesLab(ex)) {
            await lab.solve(ex.id);
            await passes([ex.id]);
            return;
          }
          await fail([ex.id, ...laterChanging]);
          await lab.solve(ex.id);
          lab.reloadPlan();
          await passes([ex.id]);
          await fail(laterChanging);
        },
        TIMEOUT.cli * 2,
      );
    });

    it(
      "without --to: a fresh lab again, where no exercise that changes the lab passes",
      async () => {
        const before = lab.plan;
        const r = await startTs(["reset", c.recipe, "--lab", labName], { timeoutMs: TIMEOUT.cli * 2 });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).toMatch(/is reset in [\d.]+s: fresh, no exercise done/);
        timings.push(`  (fresh)${" ".repeat(14)} ${/is reset in ([\d.]+)s/.exec(r.stderr)?.[1]}`);
        lab.reloadPlan();
        // The lab's options stay, live ones as the last solve set them.
        expect(lab.plan.options).toEqual(before.options);
        const changing = recipe.exercises.filter(changesLab).map((e) => e.id);
        // A staged recipe's fresh lab is in the last stage's setting, which is not the first's.
        await fail(c.staged ? changing.slice(0, 1) : changing);
      },
      TIMEOUT.cli * 2,
    );
  });
}

interface Pane {
  id: string;
  pid: string;
  dead: string;
  title: string;
}

async function panes(lab: LabHandle): Promise<Pane[]> {
  const r = await execa("tmux", [
    "list-panes",
    "-t",
    `=${sessionName(lab.plan.lab, lab.plan.recipe)}:0`,
    "-F",
    "#{pane_id} #{pane_pid} #{pane_dead} #{pane_title}",
  ]);
  return r.stdout.split("\n").map((l) => {
    const [id, pid, dead, ...title] = l.split(" ");
    return { id: id!, pid: pid!, dead: dead!, title: title.join(" ") };
  });
}

/**
 * The workspace lived through the reset: the same panes in the same places, the host shell the
 * same process, and each node pane a live shell in its node's new container.
 */
async function workspaceKept(lab: LabHandle, before: Pane[]): Promise<void> {
  const after = await panes(lab);
  expect(after.map((p) => [p.id, p.title, p.dead])).toEqual(before.map((p) => [p.id, p.title, "0"]));
  expect(after[0]!.pid).toBe(before[0]!.pid);
  const nodes = Object.values(lab.plan.nodes).filter((n) => n.interactive);
  for (const n of nodes) {
    const pane = after.find((p) => p.title.endsWith(`(${n.container})`))!;
    expect(pane.pid, n.key).not.toBe(before.find((p) => p.id === pane.id)!.pid);
    // Negative control: the new container has no such file until the pane's shell makes it.
    expect(await lab.succeeds(n.key, "test -e /tmp/wg3-pane-check")).toBe(false);
    await execa("tmux", ["send-keys", "-t", pane.id, "touch /tmp/wg3-pane-check", "Enter"]);
    await eventually(`${n.key}'s pane to be a shell in its new container`, () => lab.succeeds(n.key, "test -e /tmp/wg3-pane-check"));
  }
}
