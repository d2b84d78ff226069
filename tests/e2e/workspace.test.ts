/**
 * The attendee's path through the real CLI (./start.ts, as a person types it) on recipe-0:
 * the tmux workspace and its panes, re-running start, graph marking what runs, the
 * check/solve round trip, and stop taking everything away. Each "exists" or "works"
 * assertion has its negative control: before start, after stop, or in the host pane.
 */
import { hostname as hostHostname } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { ensureEngine } from "../../src/engine/ensure.ts";
import { makePlan, resolveOptions } from "../../src/lab/plan.ts";
import { recipesDir } from "../../src/paths.ts";
import { loadRecipe } from "../../src/recipe/load.ts";
import { eventually } from "../support/eventually.ts";
import { defaultLabBusy } from "../support/labs.ts";
import { startTs } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

const RECIPE = "recipe-0";
const SESSION = "wg3-recipe-0";
const recipe = loadRecipe(RECIPE);
// Names and roles as the recipe says (the default lab keeps them as written).
const interactive = Object.values(makePlan(recipe, "default", resolveOptions(recipe, {}), "names").nodes).filter((n) => n.interactive);

function cli(...args: string[]) {
  // No TTY here: start must still create the workspace, and never block on attaching.
  return startTs(args);
}

async function tmux(...args: string[]): Promise<string> {
  return (await execa("tmux", args)).stdout;
}

async function sessionExists(): Promise<boolean> {
  return (await execa("tmux", ["has-session", "-t", `=${SESSION}`], { reject: false })).exitCode === 0;
}

interface Pane {
  index: number;
  id: string;
  title: string;
  path: string;
}

async function panes(): Promise<Pane[]> {
  const out = await tmux("list-panes", "-t", `=${SESSION}:0`, "-F", "#{pane_index}\t#{pane_id}\t#{pane_title}\t#{pane_current_path}");
  return out.split("\n").map((l) => {
    const [index, id, title, path] = l.split("\t");
    return { index: Number(index), id: id!, title: title!, path: path! };
  });
}

const capture = (paneId: string) => tmux("capture-pane", "-p", "-J", "-t", paneId, "-S", "-200");

/** Type a line into a pane, as a person would, and wait until `expected` shows up in it. */
async function typeAndSee(paneId: string, line: string, expected: RegExp): Promise<string> {
  await tmux("send-keys", "-t", paneId, "-l", line);
  await tmux("send-keys", "-t", paneId, "Enter");
  return eventually(`${expected} in pane ${paneId}`, async () => {
    const text = await capture(paneId);
    return expected.test(text) ? text : undefined;
  });
}

const graph = async () => {
  const r = await cli("graph", RECIPE);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
};

// The workspace is tested under the workshop's own names (session wg3-recipe-0, the book's
// commands), so it needs the default recipe-0 lab, and skips when someone else runs it.
const busy = await defaultLabBusy(await ensureEngine({}), [RECIPE]);

describe.skipIf(busy)(`the attendee's workspace, through ./start.ts (recipe-0)${busy ? ` (${busy})` : ""}`, () => {
  afterAll(async () => {
    await cli("stop", RECIPE);
    await execa("tmux", ["kill-session", "-t", `=${SESSION}`], { reject: false });
  });

  it("before the start there is no session and graph marks nothing; start --no-attach creates the session detached", async () => {
    expect(await sessionExists()).toBe(false);
    expect(await graph()).not.toContain("data-state=");

    const r = await cli(RECIPE, "--no-attach");
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    // The summary says what is up and what to type next.
    for (const n of interactive) expect(r.stderr).toContain(n.container);
    expect(r.stderr).toContain(`./start.ts check ${RECIPE}`);
    expect(r.stderr).toContain(`tmux attach -t ${SESSION}`);
    expect(await sessionExists()).toBe(true);
  });

  it("pane 0 is the host shell in recipes/recipe-0, then one pane per interactive node, titled by role", async () => {
    const ps = await panes();
    expect(ps).toHaveLength(1 + interactive.length);
    expect(ps[0]!.index).toBe(0);
    expect(ps[0]!.title).toBe("host");
    expect(ps[0]!.path).toBe(join(recipesDir, RECIPE));
    for (const [i, n] of interactive.entries()) expect(ps[i + 1]!.title).toBe(`${n.role} (${n.container})`);
    // The host pane tells where it is and how to reach the harness from there.
    await eventually("the host pane's banner", async () => (await capture(ps[0]!.id)).includes("Progress: ../../start.ts check recipe-0"));
  });

  it("each node pane is an interactive shell in its own container; the host pane is not", async () => {
    const ps = await panes();
    // Negative control: the same line typed in the host pane prints the host's name, no container's.
    const hostText = await typeAndSee(ps[0]!.id, "echo wg3-at-$(hostname)-end", /^wg3-at-.*-end$/m);
    expect(hostText).toContain(`wg3-at-${hostHostname()}-end`);
    for (const n of interactive) expect(hostText).not.toContain(`wg3-at-${n.hostname}-end`);

    for (const [i, n] of interactive.entries()) {
      const id = ps[i + 1]!.id;
      // bash's prompt in the container names it (root@r0_wg-peer-1:~#)...
      await eventually(`${n.hostname}'s prompt`, async () => (await capture(id)).includes(`@${n.hostname}`));
      // ...and `hostname`, typed there, answers with the container's hostname: the output line is
      // only the name, which the typed command line alone cannot produce.
      const text = await typeAndSee(id, "hostname", new RegExp(`^${n.hostname}\\s*$`, "m"));
      for (const other of interactive.filter((o) => o !== n)) expect(text).not.toMatch(new RegExp(`^${other.hostname}\\s*$`, "m"));
    }
  });

  it("graph on the running lab marks every node as running", async () => {
    const svg = await graph();
    for (const n of Object.keys(recipe.nodes)) expect(svg).toContain(`data-node="${n}" data-state="running"`);
  });

  it("starting again keeps the one session and its panes (no duplicate)", async () => {
    const before = await panes();
    const created = await tmux("display-message", "-p", "-t", `=${SESSION}`, "#{session_id} #{session_created}");
    const r = await cli(RECIPE, "--no-attach");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/already running/);
    expect(r.stderr).toMatch(/already open/);
    const sessions = (await tmux("list-sessions", "-F", "#{session_name}")).split("\n").filter((s) => s.startsWith(SESSION)); // not other labs' wg3-LAB-recipe-0
    expect(sessions).toEqual([SESSION]);
    expect(await tmux("display-message", "-p", "-t", `=${SESSION}`, "#{session_id} #{session_created}")).toBe(created);
    expect((await panes()).map((p) => p.id)).toEqual(before.map((p) => p.id));
  });

  it("a node pane closed with `exit` comes back when start runs again", async () => {
    const last = interactive.at(-1)!;
    const title = `${last.role} (${last.container})`;
    const pane = (await panes()).find((p) => p.title === title)!;
    await tmux("send-keys", "-t", pane.id, "exit", "Enter");
    await eventually(`the ${title} pane to close`, async () => !(await panes()).some((p) => p.title === title));
    const r = await cli(RECIPE, "--no-attach");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`Re-opened the closed pane: ${title}`);
    const now = await panes();
    expect(now.map((p) => p.title)).toContain(title);
    expect(now).toHaveLength(1 + interactive.length);
    const back = now.find((p) => p.title === title)!;
    await eventually(`${last.hostname}'s prompt again`, async () => (await capture(back.id)).includes(`@${last.hostname}`));
  });

  it("check says 'not yet' on a fresh lab; solve applies one exercise, then all; check then passes with exit 0", async () => {
    const fresh = await cli("check", RECIPE);
    expect(fresh.code).toBe(1);
    expect(fresh.stdout).toMatch(/^not yet {2}configure: /m);
    expect(fresh.stdout).toMatch(/hint 1\/3: /); // configure has three hints: the first, numbered
    expect(fresh.stdout).toMatch(/3 of 3 not done yet/);
    expect(fresh.stdout).toContain("./start.ts solve recipe-0 <exercise>");

    const bad = await cli("solve", RECIPE, "no-such-exercise");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/its exercises are: configure, up, mesh/);

    const one = await cli("solve", RECIPE, "configure");
    expect(one.code, one.stderr).toBe(0);
    const after = await cli("check", RECIPE);
    expect(after.stdout).toMatch(/^pass {5}configure: /m);
    expect(after.stdout).toMatch(/^not yet {2}up: /m);
    expect(after.code).toBe(1);

    const rest = await cli("solve", RECIPE);
    expect(rest.code, rest.stderr).toBe(0);
    const done = await cli("check", RECIPE);
    expect(done.stdout, done.stderr).toMatch(/All 3 exercises pass/);
    expect(done.stdout).toContain("Next: ./start.ts stop recipe-0, then ./start.ts recipe-1 (labs/recipe-1.md).");
    expect(done.code).toBe(0);
  });

  it("stop, typed in the host pane as its banner says, ends the lab and then the session it runs in", async () => {
    const host = (await panes())[0]!;
    expect((await cli("status", RECIPE)).stdout).toMatch(/running/);
    await tmux("send-keys", "-t", host.id, "-l", "../../start.ts stop recipe-0");
    await tmux("send-keys", "-t", host.id, "Enter");
    await eventually("the session to end", async () => !(await sessionExists()), { timeout: TIMEOUT.converge });
    // The session went last: the lab is gone too, not left half-stopped by the pane's hangup.
    expect((await cli("status", RECIPE)).stdout).toMatch(/recipe-0 is not running/);
    expect(await graph()).not.toContain("data-state=");
    const engine = await ensureEngine({});
    expect(await engine.listContainers({ lab: "default", recipe: RECIPE })).toEqual([]);
    expect(await engine.listNetworks({ lab: "default", recipe: RECIPE })).toEqual([]);
  });
});
