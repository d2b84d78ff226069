import { removeSeat } from "../../classroom/seats.ts";
import { seatLabel } from "../../classroom/state.ts";
import type { Command } from "../command.ts";
import { existingClass, existingSeat, seatArgument } from "./classroom-status.ts";
import { CLASS_FLAG, classEngines } from "./classroom-up.ts";

export const classroomRemoveCommand: Command = {
  name: "classroom remove",
  usage: "classroom remove SEAT [--class NAME]",
  summary: "take a seat away: its token stops working, its lab is removed",
  flags: [CLASS_FLAG],
  async run(p, ctx) {
    const state = existingClass(p);
    const seat = existingSeat(state, seatArgument(p, "remove", true)!);
    const engines = await classEngines(ctx, state);
    const r = await ctx.progress.step(`remove seat ${seatLabel(seat.n)} (lab ${seat.lab})`, () => removeSeat(engines, state, seat));
    ctx.progress.info(
      `Seat ${seatLabel(seat.n)} is gone (${r.containers} containers, ${r.networks} networks removed); its URL no longer opens anything.`,
    );
    return 0;
  },
};
