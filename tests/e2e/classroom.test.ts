/**
 * Classroom mode through the real CLI and a real browser (Debian's chromium, headless, driven
 * by puppeteer-core): two seats of recipe-3 under this test's own class name, each attendee's
 * page with a terminal into that seat's containers, check and solve, the facilitator's live
 * view, token scoping (seat 2's token opens nothing of seat 1), and `classroom down` leaving
 * nothing behind. Screenshots go to .cache/classroom/.
 */
import { existsSync, mkdirSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { execa } from "execa";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { chromiumPath, ensureChromium } from "../../src/browser.ts";
import { firewallTable, interfaceWith, syncFirewall } from "../../src/classroom/firewall.ts";
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

/** A test that starts a seat's lab (add, reset) besides its own checks and surveys. */
const TWO_LAB_STARTS = 2 * TIMEOUT.cli;

const tokenOf = (url: string) => new URL(url).searchParams.get("token")!;

/** The class's nftables table as `nft list` prints it (its counters left out), or undefined when there is none. */
async function firewallRules(cls: string): Promise<string | undefined> {
  const r = await execa("nft", ["list", "table", "inet", firewallTable(cls)], { reject: false });
  return r.exitCode === 0 ? r.stdout.replace(/counter packets \d+ bytes \d+/g, "counter") : undefined;
}

/**
 * From every network of a seat's lab: a TCP connection from one of its containers to the
 * host's address on that network's bridge (its gateway), where `port` listens on 0.0.0.0.
 * "open" when the listener answered, else what curl said.
 */
async function reachHost(lab: string, port: number): Promise<Record<string, string>> {
  const plan = readPlan(lab, RECIPE)!;
  const out: Record<string, string> = {};
  for (const net of Object.values(plan.networks)) {
    const node = Object.values(plan.nodes).find((n) => n.ip[net.key])!;
    const r = await engine.sh(node.container, `curl -sS --connect-timeout 3 -m 6 http://${net.gateway}:${port}/`, {
      timeoutMs: TIMEOUT.exec,
    });
    out[net.key] = r.stdout.includes("host-listener") ? "open" : `exit ${r.exitCode}: ${r.stderr.trim()}`;
  }
  return out;
}

/** The facilitator's buttons, as the page's script calls them. */
const facilitatorPost = (facilitatorUrl: string, path: string, key: string) =>
  fetch(`${new URL(facilitatorUrl).origin}/facilitator/seat/${path}?key=${key}`, { method: "POST" });
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

  it("the host is out of the seats' reach: a listener on 0.0.0.0 answers them with the class's firewall table removed, and not with it", async () => {
    const listener: Server = createServer((_req, res) => res.end("host-listener\n"));
    await new Promise<void>((r) => listener.listen(0, "0.0.0.0", r));
    const port = (listener.address() as AddressInfo).port;
    try {
      const state = readClass(CLASS)!;
      const rules = (await firewallRules(CLASS))!;
      expect(rules).toContain("drop");
      // Negative control: without the table, every bridge of seat 1 reaches the host's listener.
      expect((await execa("nft", ["delete", "table", "inet", firewallTable(CLASS)], { reject: false })).exitCode).toBe(0);
      expect(await firewallRules(CLASS)).toBeUndefined();
      expect(await reachHost(`${CLASS}-01`, port)).toEqual({ home: "open", roaming: "open" });
      // The table back (as every seat start makes it): no bridge of either seat reaches the host.
      await syncFirewall(state);
      expect(await firewallRules(CLASS)).toBe(rules);
      for (const lab of [`${CLASS}-01`, `${CLASS}-02`]) {
        const seen = await reachHost(lab, port);
        for (const net of ["home", "roaming"]) expect(seen[net], `${lab} ${net}`).toMatch(/^exit 28: .*(timed out|Timeout)/i);
      }
      // The host itself still reaches its listener: only the seats' bridges are dropped.
      expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe("host-listener\n");
    } finally {
      listener.close();
    }
  });

  it(
    "classroom add while served: seat 03 gets its own token, lab and firewall rule, its page opens and the facilitator sees its row; remove takes all that away",
    async () => {
      const facilitator = await browser.newPage();
      await facilitator.goto(urls.facilitator);
      await eventually("the facilitator's rows", async () => (await facilitator.$$("tbody tr")).length === 2);
      const base = new URL(urls.seats[0]!).origin;
      // Negative control: no seat 03 yet, so no token opens it.
      expect((await fetch(`${base}/seat/03?token=${tokenOf(urls.seats[0]!)}`)).status).toBe(403);
      const add = mustSucceed(await startTs(["classroom", "add", "--class", CLASS]));
      expect(add.stderr).toContain(`Seat 03 is up (lab ${CLASS}-03)`);
      const state = readClass(CLASS)!;
      const seat3 = state.seats.find((x) => x.n === 3)!;
      expect(add.stdout + add.stderr).not.toContain(seat3.token);
      expect(new Set(state.seats.map((x) => x.token)).size).toBe(3);
      const s = await statusJson("--urls");
      expect(s.seats.map((x) => [x.seat, x.running])).toEqual([
        [1, 5],
        [2, 5],
        [3, 5],
      ]);
      const url3 = s.seats[2]!.joinUrl!;
      const attendee = await browser.newPage();
      expect((await attendee.goto(url3))?.status()).toBe(200);
      await eventually("seat 03's shell prompt", async () => (await terminalText(attendee)).includes("@r3_ts-client_home"));
      await eventually(
        "seat 03's row in the facilitator's view",
        async () => (await cellState(facilitator, 3, "no-plaintext")) === "not-yet",
      );
      expect(await facilitator.$eval("#count", (e) => e.textContent)).toBe("3");
      await facilitator.screenshot({ path: join(SHOTS, "facilitator-seat-added.png") });
      // Seat 03's bridges (the host interfaces holding its networks' gateways) are in the table.
      const bridges3 = Object.values(readPlan(`${CLASS}-03`, RECIPE)!.networks).map((n) => interfaceWith(n.gateway)!);
      expect(bridges3.length).toBe(2);
      for (const b of bridges3) expect(await firewallRules(CLASS)).toContain(`"${b}"`);
      await attendee.close();

      mustSucceed(await startTs(["classroom", "remove", "03", "--class", CLASS]));
      expect((await fetch(url3)).status).toBe(403);
      expect(await engine.listContainers({ lab: `${CLASS}-03` })).toEqual([]);
      expect(readClass(CLASS)!.seats.map((x) => x.n)).toEqual([1, 2]);
      await eventually("seat 03's row gone from the facilitator's view", async () => (await facilitator.$$("tbody tr")).length === 2);
      // Its bridges left the table (they are gone from the host); the other seats' stayed.
      const after = (await firewallRules(CLASS))!;
      for (const b of bridges3) expect(after).not.toContain(`"${b}"`);
      const bridges1 = Object.values(readPlan(`${CLASS}-01`, RECIPE)!.networks).map((n) => interfaceWith(n.gateway)!);
      for (const b of bridges1) expect(after).toContain(`"${b}"`);
      await facilitator.close();
    },
    TWO_LAB_STARTS,
  );

  it(
    "the facilitator's reset and solve buttons: a seat's token gets 403; reset brings seat 1 back fresh at the same URL, solve turns seat 2's exercise green",
    async () => {
      const key = readClass(CLASS)!.facilitatorSecret;
      for (const token of urls.seats.map(tokenOf)) {
        for (const path of ["01/reset", "02/solve/no-plaintext"]) {
          const r = await facilitatorPost(urls.facilitator, path, token);
          expect([path, r.status, await r.text()]).toEqual([path, 403, "Forbidden\n"]);
        }
      }
      expect(key).not.toBe(tokenOf(urls.seats[0]!));
      const home1 = readPlan(`${CLASS}-01`, RECIPE)!.nodes[HOME]!.container;
      const before = (await engine.listContainers({ lab: `${CLASS}-01` })).map((c) => c.id).sort();
      const facilitator = await browser.newPage();
      await facilitator.setViewport({ width: 1200, height: 500 });
      facilitator.on("dialog", (d) => void d.accept());
      await facilitator.goto(urls.facilitator);
      // Seat 1 solved no-plaintext in an earlier test (the 403s above ran nothing): green before the reset.
      await eventually("seat 1's no-plaintext green", async () => (await cellState(facilitator, 1, "no-plaintext")) === "pass");
      expect(await cellState(facilitator, 2, "no-plaintext")).toBe("not-yet");

      await facilitator.click('td[data-seat="2"][data-exercise="no-plaintext"] button.solve');
      await eventually(
        "seat 2's no-plaintext green after the facilitator's solve",
        async () => (await cellState(facilitator, 2, "no-plaintext")) === "pass",
        {
          timeout: TIMEOUT.converge,
        },
      );

      await facilitator.click('button.reset[data-seat="1"]');
      await eventually(
        "the reset of seat 1 done",
        async () => {
          const note = await facilitator.$eval('span.note[data-seat="1"]', (e) => e.textContent ?? "");
          if (note.includes("failed")) throw new Error(note);
          return note.startsWith("reset: done");
        },
        { timeout: TIMEOUT.cli },
      );
      await eventually(
        "seat 1's no-plaintext not done after its reset",
        async () => (await cellState(facilitator, 1, "no-plaintext")) === "not-yet",
      );
      await facilitator.screenshot({ path: join(SHOTS, "facilitator-after-reset.png") });
      const now = (await engine.listContainers({ lab: `${CLASS}-01` })).map((c) => c.id).sort();
      expect(now.length).toBe(5);
      expect(now.some((id) => before.includes(id))).toBe(false);
      expect(readClass(CLASS)!.seats[0]!.token).toBe(tokenOf(urls.seats[0]!));
      // The attendee's URL works as before, on the fresh lab.
      const attendee = await browser.newPage();
      expect((await attendee.goto(urls.seats[0]!))?.status()).toBe(200);
      await eventually("the fresh seat's shell prompt", async () => (await terminalText(attendee)).includes("@r3_ts-client_home"));
      await attendee.click("#check");
      await eventually("the fresh seat's check", async () => (await exerciseState(attendee, "no-plaintext")) === "not-yet");
      expect(await exerciseState(attendee, "curl")).toBe("pass");
      await attendee.close();
      await facilitator.close();
      expect(home1).toBe(readPlan(`${CLASS}-01`, RECIPE)!.nodes[HOME]!.container);
    },
    TWO_LAB_STARTS,
  );

  it(
    "the facilitator sees each seat's lab now (nodes running or not, the clients' paths); classroom reset SEAT brings seat 2 back fresh, same token, off the host",
    async () => {
      const facilitator = await browser.newPage();
      await facilitator.setViewport({ width: 1600, height: 500 });
      await facilitator.goto(urls.facilitator);
      const badge = (seat: number, node: string) =>
        facilitator.evaluate(
          ([s, n]) => document.querySelector(`td.topology[data-seat="${s}"] .node[data-node="${n}"]`)?.getAttribute("data-state"),
          [seat, node] as const,
        );
      const paths = (seat: number) =>
        facilitator.evaluate(
          (s) =>
            [...document.querySelectorAll(`td.topology[data-seat="${s}"] .path`)].map(
              (p) => `${p.getAttribute("data-from")}>${p.getAttribute("data-to")}:${p.getAttribute("data-path")}`,
            ),
          seat,
        );
      const lookAgain = async (seat: number) => {
        await facilitator.click(`button.survey[data-seat="${seat}"]`);
        await eventually(
          `seat ${seat} looked at again`,
          async () => {
            const note = await facilitator.$eval(`span.note[data-seat="${seat}"]`, (e) => e.textContent ?? "");
            if (note.includes("failed")) throw new Error(note);
            return note.startsWith("look again: done");
          },
          { timeout: TIMEOUT.cli }, // a survey runs every exercise's check, as ./start.ts check does
        );
      };
      const router = readPlan(`${CLASS}-02`, RECIPE)!.nodes["home-router"]!.container;
      await lookAgain(2);
      expect(await badge(2, "home-router")).toBe("running");
      expect(await badge(2, HOME)).toBe("running");
      const before = await paths(2);
      process.stderr.write(`seat 2's paths as the facilitator sees them: ${before.join(", ")}\n`);
      expect(before.map((p) => p.split(":")[0])).toEqual(["ts-client-home>ts-client-roaming", "ts-client-roaming>ts-client-home"]);
      // A node that stops shows as stopped at the next look.
      await engine.stop(router, 1);
      await lookAgain(2);
      expect(await badge(2, "home-router")).not.toBe("running");
      expect(await badge(2, HOME)).toBe("running");
      await facilitator.screenshot({ path: join(SHOTS, "facilitator-topology-router-stopped.png") });

      const ids = (await engine.listContainers({ lab: `${CLASS}-02` })).map((c) => c.id);
      mustSucceed(await startTs(["classroom", "reset", "2", "--class", CLASS]));
      const now = await engine.listContainers({ lab: `${CLASS}-02` });
      expect(now.map((c) => c.state)).toEqual(Array(5).fill("running"));
      expect(now.some((c) => ids.includes(c.id))).toBe(false);
      expect((await fetch(urls.seats[1]!)).status).toBe(200);
      // The running server saw the reset and surveyed the fresh seat: its router runs again.
      await eventually(
        "seat 2's router running again in the facilitator's view",
        async () => (await badge(2, "home-router")) === "running",
        {
          timeout: TIMEOUT.converge,
        },
      );
      await facilitator.screenshot({ path: join(SHOTS, "facilitator-topology-after-reset.png") });
      await facilitator.close();
      // The fresh seat's bridges are in the firewall: none reaches the host's listener.
      const listener: Server = createServer((_req, res) => res.end("host-listener\n"));
      await new Promise<void>((r) => listener.listen(0, "0.0.0.0", r));
      try {
        const seen = await reachHost(`${CLASS}-02`, (listener.address() as AddressInfo).port);
        for (const net of ["home", "roaming"]) expect(seen[net], net).toMatch(/^exit 28: /);
      } finally {
        listener.close();
      }
    },
    TWO_LAB_STARTS,
  );

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
    expect(await firewallRules(CLASS)).toBeUndefined();
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
