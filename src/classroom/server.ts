import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { WebSocket } from "@fastify/websocket";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { TerminalSession } from "../engine/engine.ts";
import { errorMessage, UserError } from "../errors.ts";
import { ROOT } from "../paths.ts";
import type { SeatBackend } from "./backend.ts";
import { SeatLimiter } from "./limiter.ts";
import { attendeePage, facilitatorPage } from "./pages.ts";
import { type ClassProgress, surveySeat } from "./progress.ts";
import { authorizeSeat, type ClassState, isFacilitator, parseSeatNumber, type Seat, seatLabel, seatOf } from "./state.ts";

/** Where the server reads the class from on every request (live.ts: the state file, as it changes). */
export interface ClassSource {
  current(): ClassState;
}

export interface ServerOptions {
  state: ClassState;
  /** The class as it changes (seats added, removed, reset); default: `state` as given. */
  live?: ClassSource;
  backend: SeatBackend;
  progress: ClassProgress;
  /** The lab guide, rendered. */
  guideHtml: string;
  limiter?: SeatLimiter;
  /** Most terminals one seat may have open at once (each is a shell in a container). */
  terminalsPerSeat?: number;
  /** A line for the facilitator's console (a seat's check failed to run, ...). */
  log?: (line: string) => void;
}

declare module "fastify" {
  interface FastifyRequest {
    seat?: Seat;
  }
}

/** Files the pages load: the terminal's code, its stylesheet, the recipe's topology picture. */
function assets(recipe: string): Record<string, { file: string; type: string }> {
  const xterm = join(ROOT, "node_modules", "@xterm");
  return {
    "xterm.js": { file: join(xterm, "xterm", "lib", "xterm.js"), type: "text/javascript" },
    "xterm.css": { file: join(xterm, "xterm", "css", "xterm.css"), type: "text/css" },
    "addon-fit.js": { file: join(xterm, "addon-fit", "lib", "addon-fit.js"), type: "text/javascript" },
    [`${recipe}.svg`]: { file: join(ROOT, "labs", `${recipe}.svg`), type: "image/svg+xml" },
  };
}

/** The one answer to a wrong key or token, whoever's seat it names: no body that tells anything. */
function forbid(reply: FastifyReply): FastifyReply {
  return reply.code(403).type("text/plain").send("Forbidden\n");
}

function query(req: FastifyRequest): Record<string, string | undefined> {
  return (req.query ?? {}) as Record<string, string | undefined>;
}

/**
 * The classroom's web server: the facilitator's view at `/` (its own key), each attendee's at
 * `/seat/NN` (that seat's token). Every seat route answers 403 unless the token is the seat's
 * own, before anything runs.
 */
export async function buildServer(options: ServerOptions): Promise<FastifyInstance> {
  const o = { ...options, live: options.live ?? { current: () => options.state } };
  // Loaded here, not at the top: every ./start.ts command loads this file's module graph, and
  // only `classroom up` needs a web server (about 250 ms to load, measured).
  const { default: Fastify } = await import("fastify");
  const { default: websocket } = await import("@fastify/websocket");
  // forceCloseConnections: the facilitator's event streams never end by themselves.
  const app = Fastify({ logger: false, forceCloseConnections: true, bodyLimit: 4096 });
  await app.register(websocket, { options: { maxPayload: 64 * 1024 } });
  app.addHook("onRequest", async (_req, reply) => {
    // Tokens travel in URLs: never pass them on in a Referer, never keep a page in a cache.
    reply.header("referrer-policy", "no-referrer").header("cache-control", "no-store").header("x-content-type-options", "nosniff");
  });
  app.setErrorHandler((err, _req, reply) => {
    const code = err instanceof UserError ? 400 : ((err as { statusCode?: number }).statusCode ?? 500);
    reply.code(code >= 400 && code < 600 ? code : 500).send({ error: errorMessage(err) });
  });
  const limiter = o.limiter ?? new SeatLimiter();
  facilitatorRoutes(app, o);
  await app.register(async (actions) => facilitatorActions(actions, o, limiter));
  await app.register(async (seats) => seatRoutes(seats, o, limiter));
  return app;
}

type Options = ServerOptions & { live: ClassSource };

function facilitatorRoutes(app: FastifyInstance, o: Options): void {
  const files = assets(o.state.recipe);
  app.get<{ Params: { file: string } }>("/assets/:file", async (req, reply) => {
    const a = files[req.params.file];
    if (!a) return reply.code(404).send({ error: "no such file" });
    return reply.type(a.type).send(readFileSync(a.file));
  });
  app.get("/", async (req, reply) => {
    if (!isFacilitator(o.live.current(), query(req).key)) return forbid(reply);
    return reply.type("text/html").send(facilitatorPage(o.live.current()));
  });
  app.get("/events", async (req, reply) => {
    if (!isFacilitator(o.live.current(), query(req).key)) return forbid(reply);
    reply.hijack();
    reply.raw.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
    const send = (data: unknown) => reply.raw.write(`data: ${JSON.stringify(data)}\n\n`);
    send(o.progress.snapshot());
    const stop = o.progress.subscribe(send);
    // A comment line now and then keeps proxies from closing a quiet stream.
    const keepAlive = setInterval(() => reply.raw.write(": keep-alive\n\n"), 15_000);
    req.raw.on("close", () => {
      stop();
      clearInterval(keepAlive);
    });
  });
}

/**
 * The facilitator's buttons: reset a seat's lab, solve one of its exercises, look at it again. The facilitator's
 * key only (a seat's token is not it); one action per seat at a time, shared with the seat's checks.
 */
function facilitatorActions(app: FastifyInstance, o: Options, limiter: SeatLimiter): void {
  app.addHook("onRequest", async (req, reply) => {
    if (!isFacilitator(o.live.current(), query(req).key)) return forbid(reply);
    const n = parseSeatNumber((req.params as { seat?: string }).seat);
    const seat = n === undefined ? undefined : seatOf(o.live.current(), n);
    if (!seat) return reply.code(404).send({ error: "no such seat in this class" });
    req.seat = seat;
  });
  app.post("/facilitator/seat/:seat/reset", async (req, reply) =>
    limited(limiter, req.seat!, reply, async () => {
      o.log?.(`seat ${seatLabel(req.seat!.n)}: reset by the facilitator`);
      await o.backend.reset(req.seat!);
      o.live.current(); // the seat's new resetAt: its progress starts again
      return { reset: seatLabel(req.seat!.n) };
    }),
  );
  app.post<{ Params: { seat: string; exercise: string } }>("/facilitator/seat/:seat/solve/:exercise", async (req, reply) =>
    limited(limiter, req.seat!, reply, async () => {
      await o.backend.solve(req.seat!, req.params.exercise);
      await surveySeat(o.backend, o.progress, req.seat!);
      return { solved: req.params.exercise };
    }),
  );
  app.post("/facilitator/seat/:seat/survey", async (req, reply) =>
    limited(limiter, req.seat!, reply, async () => {
      await surveySeat(o.backend, o.progress, req.seat!);
      return { surveyed: seatLabel(req.seat!.n) };
    }),
  );
}

/** Every route under /seat/:seat, behind one hook that matches the token to that seat. */
async function seatRoutes(app: FastifyInstance, o: Options, limiter: SeatLimiter): Promise<void> {
  const open = new Map<number, number>();
  app.addHook("onRequest", async (req, reply) => {
    const seat = authorizeSeat(o.live.current(), (req.params as { seat?: string }).seat, query(req).token);
    if (!seat) return forbid(reply);
    req.seat = seat;
  });
  // Any other path under /seat/ has no seat parameter, so the hook answers 403: a prober learns nothing.
  app.all("/seat/*", async (_req, reply) => forbid(reply));
  app.get("/seat/:seat", async (req, reply) =>
    reply.type("text/html").send(attendeePage(o.live.current(), req.seat!, o.backend, o.guideHtml)),
  );
  app.post("/seat/:seat/check", async (req, reply) =>
    limited(limiter, req.seat!, reply, async () => {
      const exercises = await o.backend.check(req.seat!);
      o.progress.record(req.seat!.n, exercises);
      return { exercises };
    }),
  );
  app.post<{ Params: { seat: string; exercise: string } }>("/seat/:seat/solve/:exercise", async (req, reply) =>
    limited(limiter, req.seat!, reply, async () => {
      await o.backend.solve(req.seat!, req.params.exercise);
      return { solved: req.params.exercise };
    }),
  );
  app.get("/seat/:seat/terminal", { websocket: true }, (socket, req) => {
    const seat = req.seat!;
    const max = o.terminalsPerSeat ?? 6;
    if ((open.get(seat.n) ?? 0) >= max) {
      socket.close(1013, `at most ${max} terminals per seat`);
      return;
    }
    open.set(seat.n, (open.get(seat.n) ?? 0) + 1);
    socket.on("close", () => open.set(seat.n, (open.get(seat.n) ?? 1) - 1));
    attachTerminal(socket, o, seat, query(req));
  });
}

/** Run `fn` for a seat unless the limiter says wait: then 429 with when to try again. */
async function limited<T>(limiter: SeatLimiter, seat: Seat, reply: FastifyReply, fn: () => Promise<T>): Promise<T | FastifyReply> {
  const key = String(seat.n);
  const wait = limiter.tryStart(key);
  if (wait)
    return reply
      .code(429)
      .header("retry-after", String(wait.retryAfterS))
      .send({ error: `${wait.why}; try again in ${wait.retryAfterS} s.` });
  try {
    return await fn();
  } finally {
    limiter.finish(key);
  }
}

/** Client messages: `{"t":"in","d":"ls\r"}` typed input, `{"t":"resize","cols":120,"rows":30}`. */
type TerminalMessage = { t: "in"; d: string } | { t: "resize"; cols: number; rows: number };

function clampSize(cols: unknown, rows: unknown): { cols: number; rows: number } {
  const c = Math.round(Number(cols));
  const r = Math.round(Number(rows));
  return { cols: c >= 10 && c <= 500 ? c : 100, rows: r >= 5 && r <= 200 ? r : 30 };
}

/**
 * Wire a websocket to a shell in one of the seat's containers. Listeners are attached at once
 * (before the shell exists), so nothing typed early is lost.
 */
function attachTerminal(socket: WebSocket, o: Options, seat: Seat, q: Record<string, string | undefined>): void {
  const node = q.node ?? o.backend.nodes()[0]?.key ?? "";
  const pending: TerminalMessage[] = [];
  let session: TerminalSession | undefined;
  let closed = false;
  const apply = (m: TerminalMessage) => {
    if (m.t === "in" && typeof m.d === "string") session!.write(m.d);
    else if (m.t === "resize") {
      const s = clampSize(m.cols, m.rows);
      void session!.resize(s.cols, s.rows);
    }
  };
  socket.on("message", (raw) => {
    let m: TerminalMessage;
    try {
      m = JSON.parse(String(raw)) as TerminalMessage;
    } catch {
      return;
    }
    if (session) apply(m);
    else pending.push(m);
  });
  socket.on("close", () => {
    closed = true;
    session?.close();
  });
  if (!o.backend.nodes().some((n) => n.key === node)) {
    socket.close(1008, "no such node in this lab");
    return;
  }
  o.backend.terminal(seat, node, clampSize(q.cols, q.rows)).then(
    (s) => {
      session = s;
      if (closed) return s.close();
      s.onData((b) => socket.send(b));
      s.onEnd(() => socket.close(1000, "the shell ended"));
      for (const m of pending.splice(0)) apply(m);
    },
    (e) => {
      o.log?.(`seat ${seat.n}: terminal on ${node} failed: ${errorMessage(e)}`);
      socket.send(Buffer.from(`\r\nCould not open a shell on ${node}: ${errorMessage(e)}\r\n`));
      socket.close(1011, "no shell");
    },
  );
}
