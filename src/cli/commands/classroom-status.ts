import type { ClassEngines } from "../../classroom/engines.ts";
import {
  type ClassState,
  facilitatorUrl,
  joinUrl,
  listClasses,
  MAX_SEATS,
  parseSeatNumber,
  readClass,
  type Seat,
  seatLabel,
  seatOf,
} from "../../classroom/state.ts";
import { LABEL } from "../../engine/labels.ts";
import { UserError } from "../../errors.ts";
import { loadRecipe } from "../../recipe/load.ts";
import { effectiveNodes } from "../../recipe/nodes.ts";
import type { Parsed } from "../args.ts";
import { type Command, out, table } from "../command.ts";
import { CLASS_FLAG, classEngines, classOf, seatCount, serverRunning } from "./classroom-up.ts";

export interface SeatStatus {
  seat: number;
  lab: string;
  running: number;
  nodes: number;
  /** The DOCKER_HOST its lab runs on. */
  engine: string;
  joinUrl?: string;
}

/** Each seat's containers running out of the recipe's nodes, found by the class's label. */
async function seatStatus(engines: ClassEngines, state: ClassState, withUrls: boolean): Promise<SeatStatus[]> {
  const containers = (await Promise.all(engines.all().map((e) => e.listContainers({ classroom: state.name })))).flat();
  const nodes = Object.keys(effectiveNodes(loadRecipe(state.recipe), state.options)).length;
  const base = state.server?.url;
  return state.seats.map((s) => ({
    seat: s.n,
    lab: s.lab,
    running: containers.filter((c) => c.labels[LABEL.lab] === s.lab && c.state === "running").length,
    nodes,
    engine: engines.of(s).dockerHost,
    ...(withUrls && base ? { joinUrl: joinUrl(base, s) } : {}),
  }));
}

export function noClass(name: string): UserError {
  const others = listClasses().filter((c) => c !== name);
  return new UserError(
    `There is no class "${name}"${others.length ? ` (there is: ${others.join(", ")}; choose one with --class)` : ""}; start one with ./start.ts classroom up --seats N --recipe RECIPE.`,
  );
}

/** The class named by --class, which must exist. */
export function existingClass(p: Parsed): ClassState {
  const name = classOf(p);
  const state = readClass(name);
  if (!state) throw noClass(name);
  return state;
}

/** The one SEAT argument of `classroom <cmd> SEAT` as a number, or one sentence (exit 2). */
export function seatArgument(p: Parsed, cmd: string, required: boolean): number | undefined {
  const [arg, ...more] = p.positionals;
  if (more.length) throw new UserError(`\`classroom ${cmd}\` takes one seat, not ${p.positionals.length} (${p.positionals.join(" ")}).`, 2);
  if (arg === undefined) {
    if (required) throw new UserError(`\`classroom ${cmd}\` needs the seat's number: ./start.ts classroom ${cmd} 03.`, 2);
    return undefined;
  }
  const n = parseSeatNumber(arg);
  if (n === undefined) throw new UserError(`"${arg}" is not a seat number: seats are 1 to ${MAX_SEATS} (01 and 1 are the same seat).`, 2);
  return n;
}

/** The seat `n` of the class, or one sentence naming the seats it has (exit 2). */
export function existingSeat(state: ClassState, n: number): Seat {
  const seat = seatOf(state, n);
  if (!seat)
    throw new UserError(
      `Class ${state.name} has no seat ${seatLabel(n)}; its seats: ${state.seats.map((s) => seatLabel(s.n)).join(", ") || "none"}.`,
      2,
    );
  return seat;
}

export const classroomStatusCommand: Command = {
  name: "classroom status",
  usage: "classroom status [--class NAME] [--urls] [--json]",
  summary: "a class's seats (containers running), its server, and with --urls the URLs to hand out",
  flags: [
    CLASS_FLAG,
    { name: "urls", help: "also print the facilitator's URL and each seat's join URL (they carry the secrets)" },
    { name: "json", help: "machine-readable output" },
  ],
  async run(p, ctx) {
    const name = classOf(p);
    const state = readClass(name);
    if (!state) throw noClass(name);
    const engines = await classEngines(ctx, state);
    const urls = Boolean(p.flags.urls);
    const seats = await seatStatus(engines, state, urls);
    const several = engines.all().length > 1;
    const serving = state.server && serverRunning(state.server.pid, name) ? state.server : undefined;
    if (urls && !state.server)
      ctx.progress.info("The class is not being served, so there are no URLs yet: ./start.ts classroom up serves it.");
    if (p.flags.json) {
      const facilitator = urls && serving ? facilitatorUrl(serving.url, state) : undefined;
      out(
        JSON.stringify(
          { class: state.name, recipe: state.recipe, createdAt: state.createdAt, server: serving, facilitatorUrl: facilitator, seats },
          null,
          2,
        ),
      );
      return 0;
    }
    out(
      `Class ${state.name}: ${seatCount(state)} of ${state.recipe}, created ${state.createdAt}; ${serving ? `served at ${serving.url} (pid ${serving.pid})` : "not being served"}.`,
    );
    if (urls && serving) out(`facilitator: ${facilitatorUrl(serving.url, state)}`);
    const rows = [["seat", "lab", "containers", ...(several ? ["engine"] : []), ...(urls ? ["join URL"] : [])]];
    for (const s of seats)
      rows.push([
        seatLabel(s.seat),
        s.lab,
        `${s.running}/${s.nodes} running`,
        ...(several ? [s.engine] : []),
        ...(urls ? [s.joinUrl ?? "-"] : []),
      ]);
    out(table(rows));
    return 0;
  },
};
