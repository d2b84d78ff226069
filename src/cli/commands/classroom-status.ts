import { type ClassState, facilitatorUrl, joinUrl, listClasses, readClass, seatLabel } from "../../classroom/state.ts";
import type { Engine } from "../../engine/engine.ts";
import { LABEL } from "../../engine/labels.ts";
import { UserError } from "../../errors.ts";
import { loadRecipe } from "../../recipe/load.ts";
import { effectiveNodes } from "../../recipe/nodes.ts";
import { type Command, engineFor, out, table } from "../command.ts";
import { CLASS_FLAG, classOf, seatCount, serverRunning } from "./classroom-up.ts";

export interface SeatStatus {
  seat: number;
  lab: string;
  running: number;
  nodes: number;
  joinUrl?: string;
}

/** Each seat's containers running out of the recipe's nodes, found by the class's label. */
async function seatStatus(engine: Engine, state: ClassState, withUrls: boolean): Promise<SeatStatus[]> {
  const containers = await engine.listContainers({ classroom: state.name });
  const nodes = Object.keys(effectiveNodes(loadRecipe(state.recipe), state.options)).length;
  const base = state.server?.url;
  return state.seats.map((s) => ({
    seat: s.n,
    lab: s.lab,
    running: containers.filter((c) => c.labels[LABEL.lab] === s.lab && c.state === "running").length,
    nodes,
    ...(withUrls && base ? { joinUrl: joinUrl(base, s) } : {}),
  }));
}

export function noClass(name: string): UserError {
  const others = listClasses().filter((c) => c !== name);
  return new UserError(
    `There is no class "${name}"${others.length ? ` (there is: ${others.join(", ")}; choose one with --class)` : ""}; start one with ./start.ts classroom up --seats N --recipe RECIPE.`,
  );
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
    const engine = await engineFor(ctx);
    const urls = Boolean(p.flags.urls);
    const seats = await seatStatus(engine, state, urls);
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
    const rows = [["seat", "lab", "containers", ...(urls ? ["join URL"] : [])]];
    for (const s of seats) rows.push([seatLabel(s.seat), s.lab, `${s.running}/${s.nodes} running`, ...(urls ? [s.joinUrl ?? "-"] : [])]);
    out(table(rows));
    return 0;
  },
};
