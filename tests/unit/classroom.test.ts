/**
 * The classroom's secrets and who may do what, without an engine: tokens, the class's state
 * file, the seat/token match, the rate limit, the facilitator's progress, and the web server's
 * routes with a fake seat backend that records every call (a refused request must reach none).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { ExerciseView, SeatBackend } from "../../src/classroom/backend.ts";
import { FIREWALL_TABLE_PREFIX, firewallScript, firewallTable, interfaceWith } from "../../src/classroom/firewall.ts";
import { SeatLimiter } from "../../src/classroom/limiter.ts";
import { LiveClass, seatChanges } from "../../src/classroom/live.ts";
import { ClassProgress } from "../../src/classroom/progress.ts";
import { forEachBounded } from "../../src/classroom/seats.ts";
import { buildServer } from "../../src/classroom/server.ts";
import {
  authorizeSeat,
  classDir,
  deleteClass,
  isFacilitator,
  joinUrl,
  newClass,
  newSeat,
  newToken,
  nextFreeSeat,
  parseSeatCount,
  parseSeatNumber,
  readClass,
  saveClass,
  updateClass,
  validClassName,
} from "../../src/classroom/state.ts";
import { serverRunning } from "../../src/cli/commands/classroom-up.ts";
import type { TerminalSession } from "../../src/engine/engine.ts";
import { loadRecipe } from "../../src/recipe/load.ts";

describe("tokens and the class's state", () => {
  it("tokens are 144 random bits, URL-safe, never repeated", () => {
    const tokens = Array.from({ length: 500 }, newToken);
    expect(new Set(tokens).size).toBe(500);
    for (const t of tokens) expect(t).toMatch(/^[A-Za-z0-9_-]{24}$/);
  });

  it("a new class: seats NAME-01.., each its own token; two classes of the same size share none", () => {
    const a = newClass("seat", "recipe-3", {}, 3);
    const b = newClass("seat", "recipe-3", {}, 3);
    expect(a.seats.map((s) => s.lab)).toEqual(["seat-01", "seat-02", "seat-03"]);
    const all = [...a.seats, ...b.seats].map((s) => s.token);
    expect(new Set([...all, a.facilitatorSecret, b.facilitatorSecret]).size).toBe(8);
    expect(joinUrl("http://h:7300", a.seats[1]!)).toBe(`http://h:7300/seat/02?token=${a.seats[1]!.token}`);
  });

  it("bad class names and seat counts are one sentence each", () => {
    expect(() => validClassName("Bad_Name")).toThrow(/not valid/);
    expect(() => validClassName("a".repeat(18))).toThrow(/up to 17/);
    expect(validClassName("t-cls-abc123")).toBe("t-cls-abc123");
    for (const bad of [undefined, true, "0", "100", "two", "1.5"]) expect(() => parseSeatCount(bad)).toThrow(/--seats needs a number/);
    expect(parseSeatCount("30")).toBe(30);
  });

  describe("on disk", () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "wg3-classroom-"));
      process.env.WG3_STATE_DIR = dir;
    });
    afterAll(() => {
      delete process.env.WG3_STATE_DIR;
      rmSync(dir, { recursive: true, force: true });
    });

    it("a running server's view follows the file: seats added, removed and reset are seen at the next read, and heard of", () => {
      const c = newClass("live", "recipe-3", {}, 2);
      saveClass(c);
      const live = new LiveClass(c);
      const heard: string[] = [];
      live.onChange((ch) => heard.push(JSON.stringify([ch.added.map((s) => s.n), ch.removed.map((s) => s.n), ch.reset.map((s) => s.n)])));
      expect(live.current().seats.map((s) => s.n)).toEqual([1, 2]);
      expect(heard).toEqual([]); // nothing changed: nothing heard
      updateClass("live", (s) => {
        s.seats.push(newSeat("live", 3));
      });
      expect(live.current().seats.map((s) => s.n)).toEqual([1, 2, 3]);
      updateClass("live", (s) => {
        s.seats = s.seats.filter((x) => x.n !== 1);
        s.seats[0]!.resetAt = "2026-01-01T10:00:00.000Z";
      });
      expect(authorizeSeat(live.current(), "01", c.seats[0]!.token)).toBeUndefined();
      expect(authorizeSeat(live.current(), "02", c.seats[1]!.token)?.n).toBe(2); // a reset seat keeps its token
      expect(heard).toEqual(["[[3],[],[]]", "[[],[1],[2]]"]);
      deleteClass("live");
      expect(live.current().seats.map((s) => s.n)).toEqual([2, 3]); // the file gone: the last seats read stay
    });

    it("is written 0600 in a 0700 folder, read back whole, and deleted", () => {
      const c = newClass("unit", "recipe-3", {}, 2);
      saveClass(c);
      const file = join(classDir("unit"), "class.json");
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(statSync(classDir("unit")).mode & 0o777).toBe(0o700);
      expect(readClass("unit")).toEqual(c);
      deleteClass("unit");
      expect(readClass("unit")).toBeUndefined();
    });
  });
});

describe("seat numbers", () => {
  it("SEAT is 1 to 99, written 7 or 07; the next free one fills gaps first", () => {
    expect(["1", "07", "99"].map(parseSeatNumber)).toEqual([1, 7, 99]);
    for (const bad of [undefined, "0", "00", "100", "x", "-1", "1.0", " 1"]) expect(parseSeatNumber(bad)).toBeUndefined();
    const c = newClass("seat", "recipe-3", {}, 3);
    expect(nextFreeSeat(c)).toBe(4);
    c.seats.splice(1, 1);
    expect(nextFreeSeat(c)).toBe(2);
    expect(nextFreeSeat({ seats: Array.from({ length: 99 }, (_, i) => newSeat("seat", i + 1)) })).toBeUndefined();
  });

  it("a seat given back under the same number with a new token is a removal and an addition, not a reset", () => {
    const a = newClass("seat", "recipe-3", {}, 2);
    const b = { ...a, seats: [a.seats[0]!, newSeat("seat", 2)] };
    const ch = seatChanges(a, b);
    expect([ch.added.map((s) => s.n), ch.removed.map((s) => s.n), ch.reset]).toEqual([[2], [2], []]);
  });
});

describe("the classroom's firewall", () => {
  it("one table per class, of ours only: drops what comes in from the seats' bridges to the host, in one transaction", () => {
    expect(firewallTable("t-cls-ab12")).toBe(`${FIREWALL_TABLE_PREFIX}t_cls_ab12`);
    const script = firewallScript("wg3ways_classroom_seat", ["podman7", "podman3", "podman7"]);
    expect(script).toBe(
      [
        "add table inet wg3ways_classroom_seat",
        "delete table inet wg3ways_classroom_seat",
        "table inet wg3ways_classroom_seat {",
        "  chain input {",
        "    type filter hook input priority filter - 10; policy accept;",
        '    iifname { "podman3", "podman7" } counter drop comment "classroom seats may not reach the host"',
        "  }",
        "}",
        "",
      ].join("\n"),
    );
    // No bridge left: the table goes, and nothing else is said.
    expect(firewallScript("wg3ways_classroom_seat", [])).toBe(
      "add table inet wg3ways_classroom_seat\ndelete table inet wg3ways_classroom_seat\n",
    );
  });

  it("a lab bridge is the host interface that holds its network's gateway", () => {
    const ifs = {
      eth0: [{ address: "192.0.2.10" }],
      podman4: [{ address: "10.213.7.1" }, { address: "fe80::1" }],
    } as unknown as ReturnType<typeof import("node:os").networkInterfaces>;
    expect(interfaceWith("10.213.7.1", ifs)).toBe("podman4");
    expect(interfaceWith("10.213.8.1", ifs)).toBeUndefined();
  });
});

describe("who may act on a seat", () => {
  const c = newClass("seat", "recipe-3", {}, 3);
  const [s1, s2] = c.seats as [(typeof c.seats)[0], (typeof c.seats)[0]];

  it("a seat's own token opens that seat, written 01 or 1", () => {
    expect(authorizeSeat(c, "01", s1.token)).toBe(s1);
    expect(authorizeSeat(c, "1", s1.token)).toBe(s1);
  });

  it("another seat's token, a wrong token, no token or an unknown seat open nothing", () => {
    expect(authorizeSeat(c, "01", s2.token)).toBeUndefined();
    expect(authorizeSeat(c, "02", s1.token)).toBeUndefined();
    expect(authorizeSeat(c, "01", `${s1.token}x`)).toBeUndefined();
    expect(authorizeSeat(c, "01", undefined)).toBeUndefined();
    expect(authorizeSeat(c, "01", [s1.token])).toBeUndefined();
    expect(authorizeSeat(c, "04", s1.token)).toBeUndefined();
    expect(authorizeSeat(c, "../01", s1.token)).toBeUndefined();
    expect(authorizeSeat(c, "01", c.facilitatorSecret)).toBeUndefined();
  });

  it("only the facilitator's key is the facilitator's", () => {
    expect(isFacilitator(c, c.facilitatorSecret)).toBe(true);
    expect(isFacilitator(c, s1.token)).toBe(false);
    expect(isFacilitator(c, "")).toBe(false);
    expect(isFacilitator(c, undefined)).toBe(false);
  });
});

describe("the rate limit on checks", () => {
  it("one at a time per seat; other seats are not held up", () => {
    const l = new SeatLimiter(10, () => 0);
    expect(l.tryStart("1")).toBeUndefined();
    expect(l.tryStart("1")?.why).toMatch(/still running/);
    expect(l.tryStart("2")).toBeUndefined();
    l.finish("1");
    expect(l.tryStart("1")).toBeUndefined();
  });

  it("at most N starts in any minute, then says how long to wait", () => {
    let t = 0;
    const l = new SeatLimiter(3, () => t);
    for (let i = 0; i < 3; i++) {
      expect(l.tryStart("1")).toBeUndefined();
      l.finish("1");
      t += 1000;
    }
    expect(l.tryStart("1")).toEqual({ retryAfterS: 57, why: "at most 3 checks a minute per seat" });
    t = 60_001;
    expect(l.tryStart("1")).toBeUndefined();
  });
});

describe("the facilitator's progress", () => {
  it("follows the class's seats: rows added and removed in order; a reset seat starts again from nothing", () => {
    const p = new ClassProgress("c", "recipe-3", [{ id: "a", title: "A" }], [1, 2]);
    p.record(2, [{ id: "a", state: "not yet" }]);
    p.record(2, [{ id: "a", state: "pass" }]);
    p.setSeats([2, 3, 1]);
    p.setSeats([2, 3]);
    expect(p.snapshot().seats.map((s) => s.seat)).toEqual([2, 3]);
    expect(p.snapshot().seats[0]!.lastGreenAt).toBeDefined();
    p.forget(2, new Date("2026-01-01T11:00:00Z"));
    expect(p.snapshot().seats[0]).toEqual({ seat: 2, exercises: {}, resetAt: "2026-01-01T11:00:00.000Z" });
  });

  it("the first check is the baseline; an exercise turning green later sets the stuck timer; listeners hear each change", () => {
    const p = new ClassProgress("c", "recipe-3", [{ id: "a", title: "A" }], [1, 2]);
    const heard: number[] = [];
    p.subscribe((s) => heard.push(s.seats.filter((x) => x.checkedAt).length));
    p.record(1, [{ id: "a", state: "pass" }], new Date("2026-01-01T10:00:00Z"));
    expect(p.snapshot().seats[0]!.lastGreenAt).toBeUndefined();
    p.record(2, [{ id: "a", state: "not yet" }], new Date("2026-01-01T10:00:00Z"));
    p.record(2, [{ id: "a", state: "pass" }], new Date("2026-01-01T10:05:00Z"));
    expect(p.snapshot().seats[1]).toMatchObject({ exercises: { a: "pass" }, lastGreenAt: "2026-01-01T10:05:00.000Z" });
    p.record(2, [{ id: "a", state: "pass" }], new Date("2026-01-01T10:09:00Z"));
    expect(p.snapshot().seats[1]!.lastGreenAt).toBe("2026-01-01T10:05:00.000Z");
    expect(heard).toEqual([1, 2, 2, 2]);
  });
});

it("forEachBounded runs at most `limit` at once and every item once", async () => {
  let now = 0;
  let most = 0;
  const done: number[] = [];
  await forEachBounded([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
    most = Math.max(most, ++now);
    await new Promise((r) => setTimeout(r, 5));
    now--;
    done.push(n);
  });
  expect(most).toBe(3);
  expect(done.sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
});

/** A seat backend that runs nothing and records what it was asked, and for which seat. */
class RecordingSeats implements SeatBackend {
  recipe = loadRecipe("recipe-3");
  calls: string[] = [];
  release?: () => void;
  nodes() {
    return [
      { key: "ts-client-home", role: "home", interactive: true },
      { key: "headscale", role: "hs", interactive: false },
    ];
  }
  async check(seat: { n: number }): Promise<ExerciseView[]> {
    this.calls.push(`check ${seat.n}`);
    if (this.release) await new Promise<void>((r) => (this.release = r));
    return this.recipe.exercises.map((e) => ({ id: e.id, title: e.title, state: "pass" as const }));
  }
  async survey(seat: { n: number }) {
    this.calls.push(`survey ${seat.n}`);
    return [];
  }
  async solve(seat: { n: number }, exercise: string) {
    this.calls.push(`solve ${seat.n} ${exercise}`);
  }
  async reset(seat: { n: number }) {
    this.calls.push(`reset ${seat.n}`);
  }
  async topology(seat: { n: number }) {
    this.calls.push(`topology ${seat.n}`);
    return { nodes: [{ key: "headscale", state: "running" }], paths: [] };
  }
  async terminal(seat: { n: number }, node: string): Promise<TerminalSession> {
    this.calls.push(`terminal ${seat.n} ${node}`);
    let onData: (b: Buffer) => void = () => {};
    return {
      onData: (fn) => {
        onData = fn;
      },
      onEnd: () => {},
      write: (d) => onData(Buffer.from(`seat ${seat.n} ${node} got ${String(d)}`)),
      resize: async () => {},
      close: () => {},
    };
  }
}

describe("the web server's routes", () => {
  const state = newClass("seat", "recipe-3", {}, 2);
  const [s1, s2] = state.seats as [(typeof state.seats)[0], (typeof state.seats)[0]];
  let seats: RecordingSeats;
  let app: FastifyInstance;
  let base: string;
  const progress = new ClassProgress("seat", "recipe-3", [], [1, 2]);

  beforeAll(async () => {
    seats = new RecordingSeats();
    app = await buildServer({ state, backend: seats, progress, guideHtml: "<h1>guide</h1>", limiter: new SeatLimiter(3) });
    // A real listener on loopback for the websocket (fastify's injectWS sends a version header ws 8.23 refuses).
    base = (await app.listen({ host: "127.0.0.1", port: 0 })).replace(/^http/, "ws");
  });

  /** Open the terminal websocket; resolves with the open socket, or with the HTTP status that refused it. */
  const terminal = (path: string) =>
    new Promise<WebSocket | number>((resolve, reject) => {
      const ws = new WebSocket(`${base}${path}`);
      ws.on("open", () => resolve(ws));
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.on("error", reject);
    });
  afterAll(() => app.close());
  afterEach(() => {
    seats.calls = [];
  });

  const forbidden = async (method: "GET" | "POST", url: string) => {
    const r = await app.inject({ method, url });
    expect(r.statusCode, url).toBe(403);
    expect(r.body).toBe("Forbidden\n");
  };

  it("every seat route refuses another seat's token, a wrong one and none, before anything runs (403, nothing else)", async () => {
    for (const token of [s2.token, "wrong", state.facilitatorSecret]) {
      await forbidden("GET", `/seat/01?token=${token}`);
      await forbidden("POST", `/seat/01/check?token=${token}`);
      await forbidden("POST", `/seat/01/solve/curl?token=${token}`);
      await forbidden("GET", `/seat/01/terminal?token=${token}`);
      await forbidden("GET", `/seat/01/anything-else?token=${token}`);
    }
    await forbidden("GET", "/seat/01");
    await forbidden("GET", `/seat/09?token=${s1.token}`);
    expect(await terminal(`/seat/01/terminal?token=${s2.token}`)).toBe(403);
    expect(await terminal("/seat/01/terminal")).toBe(403);
    expect(seats.calls).toEqual([]);
  });

  it("the seat's own token opens its page, check and solve, for that seat only", async () => {
    const page = await app.inject({ url: `/seat/01?token=${s1.token}` });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("<h1>guide</h1>");
    expect(page.body).toContain("Seat 01");
    expect(page.body).not.toContain(s1.token); // the page reads it from its own URL
    expect(page.headers["referrer-policy"]).toBe("no-referrer");
    const check = await app.inject({ method: "POST", url: `/seat/02/check?token=${s2.token}` });
    expect(check.statusCode).toBe(200);
    expect(check.json().exercises.length).toBe(seats.recipe.exercises.length);
    expect((await app.inject({ method: "POST", url: `/seat/01/solve/curl?token=${s1.token}` })).statusCode).toBe(200);
    expect(seats.calls).toEqual(["check 2", "solve 1 curl"]);
    expect(progress.snapshot().seats[1]!.checkedAt).toBeDefined();
    expect(progress.snapshot().seats[0]!.checkedAt).toBeUndefined();
  });

  it("checks are rate limited per seat: a second while one runs, and more than N a minute, get 429", async () => {
    seats.release = () => {};
    const first = app.inject({ method: "POST", url: `/seat/01/check?token=${s1.token}` });
    await new Promise((r) => setImmediate(r));
    const second = await app.inject({ method: "POST", url: `/seat/01/check?token=${s1.token}` });
    expect(second.statusCode).toBe(429);
    expect(second.headers["retry-after"]).toBeDefined();
    seats.release();
    seats.release = undefined;
    expect((await first).statusCode).toBe(200);
    // The solve above, the first check and this one make 3 in the minute for seat 1 (limit 3): the next is refused.
    expect((await app.inject({ method: "POST", url: `/seat/01/check?token=${s1.token}` })).statusCode).toBe(200);
    const fourth = await app.inject({ method: "POST", url: `/seat/01/check?token=${s1.token}` });
    expect(fourth.statusCode).toBe(429);
    expect(fourth.json().error).toMatch(/at most 3 checks a minute per seat; try again in \d+ s/);
    expect((await app.inject({ method: "POST", url: `/seat/02/check?token=${s2.token}` })).statusCode).toBe(200);
  });

  it("the terminal opens on the seat's own node and carries input and output", async () => {
    const ws = (await terminal(`/seat/01/terminal?token=${s1.token}&node=headscale`)) as WebSocket;
    const got = new Promise<string>((resolve) => ws.on("message", (b: Buffer) => resolve(String(b))));
    ws.send(JSON.stringify({ t: "in", d: "hostname\r" }));
    expect(await got).toBe("seat 1 headscale got hostname\r");
    ws.terminate();
    expect(seats.calls).toEqual(["terminal 1 headscale"]);
  });

  it("a node that is not in the lab gets no shell", async () => {
    const ws = (await terminal(`/seat/01/terminal?token=${s1.token}&node=the-host`)) as WebSocket;
    const code = await new Promise<number>((resolve) => ws.on("close", (c: number) => resolve(c)));
    expect(code).toBe(1008);
    expect(seats.calls).toEqual([]);
  });

  it("the facilitator's reset and solve buttons: the facilitator's key only, a seat's token gets 403 and nothing runs", async () => {
    const own = await buildServer({ state, backend: seats, progress, guideHtml: "", limiter: new SeatLimiter(10) });
    const post = (url: string) => own.inject({ method: "POST", url });
    for (const key of [s1.token, s2.token, "wrong"]) {
      for (const url of [`/facilitator/seat/01/reset?key=${key}`, `/facilitator/seat/01/solve/curl?key=${key}`]) {
        const r = await post(url);
        expect([url, r.statusCode, r.body]).toEqual([url, 403, "Forbidden\n"]);
      }
    }
    expect((await post("/facilitator/seat/01/reset")).statusCode).toBe(403);
    expect(seats.calls).toEqual([]);
    const k = state.facilitatorSecret;
    expect((await post(`/facilitator/seat/09/reset?key=${k}`)).statusCode).toBe(404);
    expect((await own.inject({ method: "GET", url: `/facilitator/seat/01/reset?key=${k}` })).statusCode).toBe(404);
    expect(seats.calls).toEqual([]);
    const reset = await post(`/facilitator/seat/02/reset?key=${k}`);
    expect([reset.statusCode, reset.json()]).toEqual([200, { reset: "02" }]);
    const solve = await post(`/facilitator/seat/01/solve/curl?key=${k}`);
    expect([solve.statusCode, solve.json()]).toEqual([200, { solved: "curl" }]);
    const survey = await post(`/facilitator/seat/02/survey?key=${k}`);
    expect([survey.statusCode, survey.json()]).toEqual([200, { surveyed: "02" }]);
    expect(await post(`/facilitator/seat/02/survey?key=${s2.token}`)).toMatchObject({ statusCode: 403 });
    expect(seats.calls).toEqual(["reset 2", "solve 1 curl", "survey 1", "topology 1", "survey 2", "topology 2"]);
    expect(progress.snapshot().seats[1]!.topology).toEqual({ nodes: [{ key: "headscale", state: "running" }], paths: [] });
    await own.close();
  });

  it("the server asks its class source on every request: a seat taken away is refused at once, one added opens", async () => {
    const s3 = newSeat("seat", 3);
    let now = { ...state, seats: [s1, s3] };
    const own = await buildServer({ state, live: { current: () => now }, backend: seats, progress, guideHtml: "" });
    expect((await own.inject({ url: `/seat/02?token=${s2.token}` })).statusCode).toBe(403);
    expect((await own.inject({ url: `/seat/03?token=${s3.token}` })).statusCode).toBe(200);
    expect((await own.inject({ method: "POST", url: `/facilitator/seat/02/reset?key=${state.facilitatorSecret}` })).statusCode).toBe(404);
    now = { ...state, seats: [s1, s2] }; // negative control: the same request once seat 2 is back
    expect((await own.inject({ url: `/seat/02?token=${s2.token}` })).statusCode).toBe(200);
    await own.close();
  });

  it("the facilitator's view and events need the facilitator's key; a seat token is not it", async () => {
    await forbidden("GET", "/");
    await forbidden("GET", `/?key=${s1.token}`);
    await forbidden("GET", `/events?key=${s1.token}`);
    const page = await app.inject({ url: `/?key=${state.facilitatorSecret}` });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("Classroom seat");
    for (const s of state.seats) expect(page.body).not.toContain(s.token);
  });

  it("assets: the terminal's code and the recipe's picture, nothing else", async () => {
    expect((await app.inject({ url: "/assets/xterm.js" })).statusCode).toBe(200);
    expect((await app.inject({ url: "/assets/recipe-3.svg" })).headers["content-type"]).toContain("image/svg+xml");
    expect((await app.inject({ url: "/assets/..%2F..%2Fpackage.json" })).statusCode).toBe(404);
    expect((await app.inject({ url: "/assets/class.json" })).statusCode).toBe(404);
  });
});

describe("which process is a class's server", () => {
  it("only a live `classroom up` of that class: never a pid reused by another process", async () => {
    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 20000)", "--", "classroom", "up", "--class", "c1"], {
      stdio: "ignore",
    });
    try {
      await new Promise((r) => child.once("spawn", r));
      expect(serverRunning(child.pid!, "c1")).toBe(true);
      expect(serverRunning(child.pid!, "c2")).toBe(false);
      expect(serverRunning(process.pid, "c1")).toBe(false); // alive, but not a classroom server
    } finally {
      child.kill();
    }
    await new Promise((r) => child.once("exit", r));
    expect(serverRunning(child.pid!, "c1")).toBe(false);
  });
});
