/**
 * Classroom mode through the real CLI and a real browser (Debian's chromium, headless, driven
 * by puppeteer-core): two seats of recipe-3 under this test's own class name, each attendee's
 * page with a terminal into that seat's containers, check and solve, the facilitator's live
 * view, token scoping (seat 2's token opens nothing of seat 1), and `classroom down` leaving
 * nothing behind. Screenshots go to .cache/classroom/.
 */
import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { chromiumPath, ensureChromium } from "../../src/browser.ts";
import { classDir, readClass } from "../../src/classroom/state.ts";
import type { Engine } from "../../src/engine/engine.ts";
import { ensureEngine } from "../../src/engine/ensure.ts";
import { readPlan } from "../../src/lab/plan.ts";
import { ROOT } from "../../src/paths.ts";
import { eventually, timeUntil } from "../support/eventually.ts";
import { testLabName } from "../support/labs.ts";
import { freePort } from "../support/ports.ts";
import { mustSucceed, type RunningStartTs, spawnStartTs, startTs } from "../support/start-ts.ts";
import { TIMEOUT } from "../support/timeouts.ts";

const RECIPE = "recipe-3";
const CLASS = testLabName("cls");
const SHOTS = join(ROOT, ".cache", "classroom");
const HOME = "ts-client-home";

interface Urls {
  facilitator: string;
  seats: string[];
}

let engine: Engine;
let server: RunningStartTs;
let browser: Browser;
let urls: Urls;
let downDone = false;

async function statusJson(...extra: string[]) {
  const r = mustSucceed(await startTs(["classroom", "status", "--class", CLASS, "--json", ...extra]));
  return JSON.parse(r.stdout) as {
    facilitatorUrl?: string;
    seats: { seat: number; lab: string; running: number; nodes: number; joinUrl?: string }[];
  };
}

/** What the page's terminal shows now, as text (xterm's DOM renderer draws one div per row). */
async function terminalText(page: Page): Promise<string> {
  return page.evaluate(() =>
    [...(document.querySelector(".xterm-rows")?.children ?? [])].map((row) => (row.textContent ?? "").replace(/\u00a0/g, " ")).join("\n"),
  );
}

async function typeLine(page: Page, line: string): Promise<void> {
  await page.click("#terminal");
  await page.keyboard.type(line);
  await page.keyboard.press("Enter");
}

const exerciseState = (page: Page, id: string) =>
  page.evaluate((x) => document.querySelector(`li[data-exercise="${x}"]`)?.getAttribute("data-state"), id);

const cellState = (page: Page, seat: number, id: string) =>
  page.evaluate(([s, x]) => document.querySelector(`td[data-seat="${s}"][data-exercise="${x}"]`)?.getAttribute("data-state"), [
    seat,
    id,
  ] as const);

/** Open a seat's terminal websocket with a token; the HTTP status when refused, "open" when not. */
function openTerminal(base: string, seat: string, token: string): Promise<number | "open"> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace(/^http/, "ws")}/seat/${seat}/terminal?token=${token}`);
    ws.on("open", () => {
      ws.close();
      resolve("open");
    });
    ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
    ws.on("error", reject);
  });
}

const tokenOf = (url: string) => new URL(url).searchParams.get("token")!;
const homeAddress = (seat: number) => readPlan(`${CLASS}-0${seat}`, RECIPE)!.nodes[HOME]!.ip.home!;

/** `classroom up` for two seats of RECIPE, served on loopback only. */
function classUpArgs(cls: string, port: number, more: string[]): string[] {
  return ["classroom", "up", "--seats", "2", "--recipe", RECIPE, "--class", cls, "--listen", "127.0.0.1", "--port", String(port), ...more];
}

describe(`classroom mode: 2 seats of ${RECIPE} in a real browser (class ${CLASS})`, () => {
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    engine = await ensureEngine({});
    const port = await freePort();
    server = spawnStartTs(classUpArgs(CLASS, port, ["--sweep", "0"]), { timeoutMs: Number.POSITIVE_INFINITY });
    let exited = false;
    void server.exited.then(() => (exited = true));
    await eventually(
      "classroom up to serve",
      () => {
        if (exited) throw new Error(`classroom up exited: ${server.output().slice(-1500)}`);
        return server.output().includes("serving at");
      },
      { timeout: TIMEOUT.cli, seen: () => server.output().slice(-1500) },
    );
    const s = await statusJson("--urls");
    urls = { facilitator: s.facilitatorUrl!, seats: s.seats.map((x) => x.joinUrl!) };
    browser = await puppeteer.launch({
      executablePath: chromiumPath() ?? (await ensureChromium({ yes: true })),
      headless: true,
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
    });
  });

  afterAll(async () => {
    await browser?.close();
    if (!downDone) await startTs(["classroom", "down", "--class", CLASS]);
    server?.child.kill("SIGINT");
  });

  it("up started both seats as labs of their own; status prints the secrets only with --urls; the state file is 0600", async () => {
    const s = await statusJson();
    expect(s.seats.map((x) => [x.lab, x.running, x.nodes])).toEqual([
      [`${CLASS}-01`, 5, 5],
      [`${CLASS}-02`, 5, 5],
    ]);
    const plain = mustSucceed(await startTs(["classroom", "status", "--class", CLASS]));
    const state = readClass(CLASS)!;
    for (const secret of [state.facilitatorSecret, ...state.seats.map((x) => x.token)]) {
      expect(plain.stdout + plain.stderr + server.output()).not.toContain(secret);
      expect(JSON.stringify(s)).not.toContain(secret);
    }
    expect(urls.seats.map(tokenOf)).toEqual(state.seats.map((x) => x.token));
    expect(statSync(join(classDir(CLASS), "class.json")).mode & 0o777).toBe(0o600);
    // Different subnets: the seats' home clients have different addresses.
    expect(homeAddress(1)).not.toBe(homeAddress(2));
  });

  it("the attendee page loads the guide and a terminal in the seat's own container: hostname and address are that container's", async () => {
    const page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 900 });
    const res = await page.goto(urls.seats[0]!);
    expect(res?.status()).toBe(200);
    expect(await page.$eval("#guide h1", (h) => h.textContent)).toContain("Recipe 3");
    expect(await page.$eval("#guide img", (i) => (i as HTMLImageElement).naturalWidth)).toBeGreaterThan(0);
    await eventually("the shell's prompt in the terminal", async () => (await terminalText(page)).includes("@r3_ts-client_home"));
    // Negative control: no output line is the bare hostname before it is asked for (the prompt has it inside a longer line).
    expect(await terminalText(page)).not.toMatch(/^r3_ts-client_home\s*$/m);
    await typeLine(page, "hostname");
    await eventually("hostname's answer", async () => /^r3_ts-client_home\s*$/m.test(await terminalText(page)));
    // The seats share hostnames; their addresses differ: this is seat 1's container, not seat 2's.
    await typeLine(page, "ip -4 -o addr show eth0");
    const text = await eventually("eth0's address", async () => {
      const t = await terminalText(page);
      return t.includes(`inet ${homeAddress(1)}/`) ? t : undefined;
    });
    expect(text).not.toContain(`inet ${homeAddress(2)}/`);
    // The engine's socket is on the host (the probe's target is real) and not in the seat's container.
    if (engine.dockerHost.startsWith("unix://")) {
      const socket = engine.dockerHost.replace(/^unix:\/\//, "");
      expect(existsSync(socket)).toBe(true);
      await typeLine(page, `test -S ${socket} && echo "socket:$((20+1))-visible" || echo "socket:$((20+1))-absent"`);
      await eventually("the socket probe's answer", async () => /socket:21-(visible|absent)/.test(await terminalText(page)));
      expect(await terminalText(page)).toContain("socket:21-absent");
    }
    await page.screenshot({ path: join(SHOTS, "attendee-terminal.png") });
    // Closing the page hangs up its shell and the job running in it (the engine alone would leave them).
    await typeLine(page, "sleep 300");
    const container = readPlan(`${CLASS}-01`, RECIPE)!.nodes[HOME]!.container;
    // Live ones only: the container's PID 1 (tailscaled) does not reap orphans, so a killed
    // sleep whose bash died first stays a zombie (state Z), which holds nothing but its pid.
    const shells = async () => (await engine.sh(container, "ps -eo stat=,comm= | grep -v '^Z' | grep -cE ' (bash|sleep)$'")).stdout.trim();
    await eventually("the terminal's bash and its sleep running", async () => (await shells()) === "2");
    await page.close();
    await eventually("no shell left once the page is closed", async () => {
      const n = await shells();
      if (n !== "0")
        throw new Error(
          `${n} bash/sleep processes in ${container}: ${(await engine.sh(container, "ps -eo pid,ppid,pgid,sid,stat,comm")).stdout}`,
        );
      return true;
    });
  });

  it("seat 2's token opens nothing of seat 1 (page, check, solve, terminal: 403 and nothing else), while it opens seat 2", async () => {
    const base = new URL(urls.seats[0]!).origin;
    const t2 = tokenOf(urls.seats[1]!);
    const page = await fetch(`${base}/seat/01?token=${t2}`);
    expect([page.status, await page.text()]).toEqual([403, "Forbidden\n"]);
    for (const path of ["check", "solve/no-plaintext"]) {
      const r = await fetch(`${base}/seat/01/${path}?token=${t2}`, { method: "POST" });
      expect([path, r.status, await r.text()]).toEqual([path, 403, "Forbidden\n"]);
    }
    expect(await openTerminal(base, "01", t2)).toBe(403);
    // The same token on its own seat: everything opens (so the 403s above are about the seat, not the token).
    expect((await fetch(`${base}/seat/02?token=${t2}`)).status).toBe(200);
    expect(await openTerminal(base, "02", t2)).toBe("open");
    const tab = await browser.newPage();
    expect((await tab.goto(`${base}/seat/01?token=${t2}`))?.status()).toBe(403);
    await tab.screenshot({ path: join(SHOTS, "seat-1-with-seat-2-token.png") });
    await tab.close();
  });

  it("check turns an exercise green after solve, and the facilitator's view shows it within seconds", async () => {
    const facilitator = await browser.newPage();
    await facilitator.setViewport({ width: 1200, height: 500 });
    expect((await facilitator.goto(urls.facilitator))?.status()).toBe(200);
    // The server checked every seat once at start: no-plaintext is not done anywhere yet.
    await eventually(
      "the first survey in the facilitator's view",
      async () => (await cellState(facilitator, 1, "no-plaintext")) === "not-yet",
    );
    expect(await cellState(facilitator, 2, "no-plaintext")).toBe("not-yet");

    const attendee = await browser.newPage();
    await attendee.setViewport({ width: 1400, height: 900 });
    await attendee.goto(urls.seats[0]!);
    await attendee.click("#check");
    await eventually("the first check's answer", async () => (await exerciseState(attendee, "no-plaintext")) === "not-yet");
    expect(await exerciseState(attendee, "curl")).toBe("pass");

    await attendee.click('button.solve[data-exercise="no-plaintext"]');
    await eventually(
      "the solution of no-plaintext applied",
      async () => (await attendee.$eval("#status", (e) => e.textContent)).includes("applied"),
      { timeout: TIMEOUT.converge },
    );
    const t0 = performance.now();
    await attendee.click("#check");
    const attendeeSaw = await timeUntil(
      "no-plaintext green on the attendee's page",
      async () => (await exerciseState(attendee, "no-plaintext")) === "pass",
    );
    await attendee.screenshot({ path: join(SHOTS, "attendee-after-solve.png") });
    await eventually(
      "no-plaintext green for seat 1 in the facilitator's view",
      async () => (await cellState(facilitator, 1, "no-plaintext")) === "pass",
      {
        timeout: TIMEOUT.short,
      },
    );
    const facilitatorSaw = (performance.now() - t0) / 1000;
    process.stderr.write(
      `after the click on Check: the attendee saw green in ${attendeeSaw.toFixed(2)} s, the facilitator's view in ${facilitatorSaw.toFixed(2)} s\n`,
    );
    // Seat 2 did nothing: still not done, and its stuck timer still counts from the start.
    expect(await cellState(facilitator, 2, "no-plaintext")).toBe("not-yet");
    expect(await facilitator.$eval('tr[data-seat="1"] td[data-last-green]', (td) => td.getAttribute("data-last-green"))).not.toBe("");
    expect(await facilitator.$eval('tr[data-seat="2"] td[data-last-green]', (td) => td.getAttribute("data-last-green"))).toBe("");
    await facilitator.screenshot({ path: join(SHOTS, "facilitator.png") });
    await attendee.close();
    await facilitator.close();
  });

  it("classroom down stops the server and leaves no container, network or volume of the class (by labels)", async () => {
    const before = await engine.listContainers({ classroom: CLASS });
    expect(before.length).toBe(10);
    expect((await engine.listNetworks({ classroom: CLASS })).length).toBe(4);
    mustSucceed(await startTs(["classroom", "down", "--class", CLASS]));
    downDone = true;
    expect((await server.exited).code).toBe(0);
    expect(await engine.listContainers({ classroom: CLASS })).toEqual([]);
    expect(await engine.listNetworks({ classroom: CLASS })).toEqual([]);
    expect(await engine.listVolumes({ classroom: CLASS })).toEqual([]);
    for (const lab of [`${CLASS}-01`, `${CLASS}-02`]) {
      expect(await engine.listContainers({ lab })).toEqual([]);
      expect(readPlan(lab, RECIPE)).toBeUndefined();
    }
    expect(readClass(CLASS)).toBeUndefined();
  });
});

describe("a class whose start is cut short", () => {
  const upArgs = (cls: string, port: number) => classUpArgs(cls, port, ["--parallel", "1"]);
  const firstSeatUp = (run: RunningStartTs) =>
    eventually("the first seat up", () => /seat 01 \(lab .*\) up in/.test(run.output()), {
      timeout: TIMEOUT.cli,
      seen: () => run.output().slice(-800),
    });
  const leftovers = async (cls: string) => [
    ...(await engine.listContainers({ classroom: cls })).map((c) => c.name),
    ...(await engine.listNetworks({ classroom: cls })).map((n) => n.name),
  ];

  it("Ctrl-C while the seats start removes every seat this run started, and the class's state", async () => {
    const cls = testLabName("clsint");
    const run = spawnStartTs(upArgs(cls, await freePort()));
    await firstSeatUp(run);
    expect((await leftovers(cls)).length).toBeGreaterThan(0); // negative control: the first seat is there
    run.child.kill("SIGINT");
    const end = await run.done;
    expect(end.code, end.all.slice(-800)).toBe(130);
    expect(end.stderr).toContain("Interrupted: the seats this run started have been removed.");
    expect(await leftovers(cls)).toEqual([]);
    expect(readClass(cls)).toBeUndefined();
  });

  it("after a start killed outright (no cleanup ran), classroom down still finds and removes everything by the class's label", async () => {
    const cls = testLabName("clskill");
    const run = spawnStartTs(upArgs(cls, await freePort()));
    await firstSeatUp(run);
    run.child.kill("SIGKILL");
    await run.exited;
    expect((await leftovers(cls)).length).toBeGreaterThan(0);
    const down = mustSucceed(await startTs(["classroom", "down", "--class", cls]));
    expect(down.stderr).toMatch(/removed \d+ containers, \d+ networks and \d+ volumes; class .* is gone/);
    expect(await leftovers(cls)).toEqual([]);
    expect(readClass(cls)).toBeUndefined();
  });
});
