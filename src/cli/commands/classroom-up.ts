import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { ClassEngines, parseEngines } from "../../classroom/engines.ts";
import { ensureNft } from "../../classroom/firewall.ts";
import { guardHost, removeClass, removeSeats, startSeats } from "../../classroom/seats.ts";
import { serveClass } from "../../classroom/serve.ts";
import { type ClassState, DEFAULT_CLASS, newClass, parseSeatCount, readClass, saveClass, validClassName } from "../../classroom/state.ts";
import type { Engine } from "../../engine/engine.ts";
import { ensureEngine } from "../../engine/ensure.ts";
import { UserError } from "../../errors.ts";
import { resolveOptions } from "../../lab/plan.ts";
import { listRecipes, loadRecipe } from "../../recipe/load.ts";
import type { Parsed } from "../args.ts";
import { type Command, type Ctx, engineFor } from "../command.ts";

export const CLASS_FLAG = {
  name: "class",
  value: "NAME",
  help: `which class: its seats are the labs NAME-01, NAME-02, ... (default: ${DEFAULT_CLASS})`,
};

/** A whole number from a flag, within bounds, or one sentence saying what is expected. */
export function intFlag(p: Parsed, name: string, fallback: number, min: number, max: number): number {
  const v = p.flags[name];
  if (v === undefined) return fallback;
  if (typeof v !== "string" || !/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
    throw new UserError(`--${name} needs a whole number from ${min} to ${max}, not "${v}".`, 2);
  return Number(v);
}

/**
 * The engines of a class: the one found as for any lab, then the class's own (`--engines`).
 * One that does not answer stops the command in one sentence: its seats would be unreachable.
 */
export async function classEngines(ctx: Ctx, state: ClassState, first?: Engine): Promise<ClassEngines> {
  return ClassEngines.open(state, first ?? (await engineFor(ctx)));
}

export function classOf(p: Parsed): string {
  return validClassName((p.flags.class as string | undefined) ?? DEFAULT_CLASS);
}

/** ` --class NAME` for a class other than the default, for the commands we tell the user to type next. */
export function classFlag(name: string): string {
  return name === DEFAULT_CLASS ? "" : ` --class ${name}`;
}

export function seatCount(state: ClassState): string {
  return `${state.seats.length} seat${state.seats.length === 1 ? "" : "s"}`;
}

/**
 * Is the class's server (a `classroom up` of this class) still running as `pid`? A pid from a
 * state file may have been reused by another process since a crash: on Linux its command line
 * must name this command and class, so that `down` never signals a stranger.
 */
export function serverRunning(pid: number, className: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const cmdline = `/proc/${pid}/cmdline`;
  if (!existsSync(cmdline)) return process.platform !== "linux";
  const argv = readFileSync(cmdline, "utf8").split("\0");
  const at = argv.indexOf("classroom");
  const cls = argv.indexOf("--class");
  return at >= 0 && argv[at + 1] === "up" && (cls >= 0 ? argv[cls + 1] === className : className === DEFAULT_CLASS);
}

/** The class as stored, checked against what this command line asks for; or a new one (not yet saved). */
function classFor(p: Parsed, name: string): { state: ClassState; isNew: boolean } {
  const existing = readClass(name);
  const recipe = p.flags.recipe as string | undefined;
  if (existing) {
    const seats = p.flags.seats === undefined ? existing.seats.length : parseSeatCount(p.flags.seats);
    const engines = p.flags.engines === undefined ? (existing.engines ?? []) : parseEngines(p.flags.engines);
    if (engines.join(",") !== (existing.engines ?? []).join(","))
      throw new UserError(
        `Class ${name} has its seats on ${existing.engines?.length ? existing.engines.join(", ") : "one engine"}; its engines cannot change: ./start.ts classroom down${name === DEFAULT_CLASS ? "" : ` --class ${name}`} first, or choose another --class.`,
      );
    if ((recipe && recipe !== existing.recipe) || seats !== existing.seats.length)
      throw new UserError(
        `Class ${name} already has ${existing.seats.length} seats of ${existing.recipe}; ./start.ts classroom down${name === DEFAULT_CLASS ? "" : ` --class ${name}`} first, or choose another --class.`,
      );
    if (existing.server && serverRunning(existing.server.pid, name))
      throw new UserError(`Class ${name} is already being served at ${existing.server.url} (pid ${existing.server.pid}).`);
    return { state: existing, isNew: false };
  }
  if (!recipe) throw new UserError(`classroom up needs --recipe: one of ${listRecipes().join(", ")}.`, 2);
  const seats = parseSeatCount(p.flags.seats);
  const r = loadRecipe(recipe);
  const state = newClass(name, recipe, resolveOptions(r, {}), seats);
  const engines = parseEngines(p.flags.engines);
  if (engines.length) state.engines = engines;
  return { state, isNew: true };
}

export const classroomUpCommand: Command = {
  name: "classroom up",
  usage: "classroom up --seats N --recipe RECIPE [--class NAME] [--engines HOSTS]",
  summary: "host a class: one lab per seat, a web page per attendee, a live view for the facilitator",
  details:
    "Starts one lab of RECIPE per seat (labs NAME-01 ... NAME-NN, each with its own names and subnets,\n" +
    "--parallel at a time), then serves until Ctrl-C: each attendee's page at /seat/NN?token=... (the lab\n" +
    "guide, the exercises with check and solve, a terminal on each node of that seat's lab) and the\n" +
    "facilitator's at /?key=... (every seat's exercises, live). Tokens are random and stored 0600 in\n" +
    ".state/classroom/NAME/; ./start.ts classroom status --urls prints the URLs to hand out.\n" +
    "Ctrl-C while the seats start removes what this run started; once serving, it stops the server and\n" +
    "the seats run on (classroom up serves them again, classroom down removes them).",
  flags: [
    { name: "seats", value: "N", help: "how many attendees (one lab each), 1 to 99" },
    { name: "recipe", value: "RECIPE", help: "the lab every seat gets" },
    CLASS_FLAG,
    { name: "port", value: "P", help: "TCP port of the web server (default: 7300)" },
    { name: "listen", value: "ADDR", help: "address to listen on (default: 0.0.0.0, every interface)" },
    { name: "url", value: "BASE", help: "how attendees reach this machine, for the URLs (default: http://<hostname>:<port>)" },
    { name: "parallel", value: "N", help: "seats started at once (default: 2)" },
    {
      name: "sweep",
      value: "S",
      help: "seconds between two checks of every seat for the facilitator's view; 0: only on attendees' checks (default: 60)",
    },
    {
      name: "engines",
      value: "HOSTS",
      help: "more engines for the seats, comma-separated DOCKER_HOSTs (unix:///path.sock, tcp://HOST:PORT; another machine's socket forwarded with ssh -L); seats are spread evenly",
    },
    { name: "yes", help: "install the engine without asking if none is found" },
  ],
  async run(p, ctx) {
    const name = classOf(p);
    const port = intFlag(p, "port", 7300, 1, 65535);
    const parallel = intFlag(p, "parallel", 2, 1, 16);
    const sweepS = intFlag(p, "sweep", 60, 0, 86400);
    const listen = (p.flags.listen as string | undefined) ?? "0.0.0.0";
    const base = ((p.flags.url as string | undefined) ?? `http://${listen === "0.0.0.0" ? hostname() : listen}:${port}`).replace(
      /\/+$/,
      "",
    );
    const { state, isNew } = classFor(p, name);
    const engine = await ensureEngine({ allowSetup: true, yes: Boolean(p.flags.yes), progress: ctx.progress });
    const engines = await ClassEngines.open(state, engine);
    if (isNew) engines.place(state.seats);
    // The firewall that keeps seats off this host needs nft (an engine elsewhere: not this host's business).
    if (engines.all().some((e) => e.dockerHost.startsWith("unix://")))
      await ensureNft({ yes: Boolean(p.flags.yes), progress: ctx.progress });
    saveClass(state); // before any seat: `classroom down` finds a class whose start was cut short
    await startAll(engines, state, isNew, parallel, ctx);
    return serve(engines, state, { listen, port, base, sweepS }, ctx);
  },
};

async function startAll(engines: ClassEngines, state: ClassState, isNew: boolean, parallel: number, ctx: Ctx) {
  const outcomes = await startSeats(engines, state, { parallel, progress: ctx.progress, signal: ctx.signal });
  if (ctx.signal.aborted) {
    // Seats cut short removed themselves (as any interrupted lab start does); the finished ones go too.
    if (isNew) await removeClass(engines, state);
    else {
      await removeSeats(
        engines,
        state.recipe,
        outcomes.filter((o) => !o.already && !o.error).map((o) => o.seat),
      );
      await guardHost(engines, state);
    }
    throw new UserError("Interrupted: the seats this run started have been removed.", 130);
  }
  const failed = outcomes.filter((o) => o.error);
  const flag = state.name === "seat" ? "" : ` --class ${state.name}`;
  if (failed.length)
    throw new UserError(
      `${failed.length} of ${state.seats.length} seats did not start (see above); ./start.ts classroom up${flag} tries them again, ./start.ts classroom down${flag} removes the class.`,
    );
}

async function serve(
  engines: ClassEngines,
  state: ClassState,
  o: { listen: string; port: number; base: string; sweepS: number },
  ctx: Ctx,
): Promise<number> {
  const serving = await serveClass(engines, state, { ...o, log: (l) => ctx.progress.info(l) });
  state.server = { pid: process.pid, url: o.base };
  saveClass(state);
  const flag = state.name === "seat" ? "" : ` --class ${state.name}`;
  ctx.onInterruptSay?.("Stopping the classroom server; the seats keep running.");
  ctx.progress.info(
    `Classroom ${state.name}: ${seatCount(state)} of ${state.recipe}, serving at ${o.base} (listening on ${o.listen}:${o.port}).\n` +
      `The URLs to hand out (each carries its seat's secret token): ./start.ts classroom status${flag} --urls\n` +
      `Ctrl-C stops serving; ./start.ts classroom down${flag} removes every seat.`,
  );
  await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
  await serving.close();
  // `classroom down` may have removed the class meanwhile (it stops this server first): do not bring its state back.
  const now = readClass(state.name);
  if (now) {
    delete now.server;
    saveClass(now);
  }
  ctx.progress.info(
    `Stopped serving. The seats still run: ./start.ts classroom up${flag} serves them again, ./start.ts classroom down${flag} removes them.`,
  );
  return 0;
}
