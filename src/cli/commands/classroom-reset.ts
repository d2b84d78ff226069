import { ensureNft } from "../../classroom/firewall.ts";
import { resetSeat } from "../../classroom/seats.ts";
import { seatLabel } from "../../classroom/state.ts";
import { UserError } from "../../errors.ts";
import type { Command } from "../command.ts";
import { existingClass, existingSeat, seatArgument } from "./classroom-status.ts";
import { CLASS_FLAG, classEngines, classFlag } from "./classroom-up.ts";

export const classroomResetCommand: Command = {
  name: "classroom reset",
  usage: "classroom reset SEAT [--class NAME]",
  summary: "bring a seat's lab back fresh; its token and URL stay the same",
  details: "Removes the seat's lab and starts it again as classroom up did; a running server surveys it anew.",
  flags: [CLASS_FLAG],
  async run(p, ctx) {
    const state = existingClass(p);
    const seat = existingSeat(state, seatArgument(p, "reset", true)!);
    const engines = await classEngines(ctx, state);
    if (engines.all().some((e) => e.dockerHost.startsWith("unix://"))) await ensureNft({ progress: ctx.progress });
    await ctx.progress.step(`reset seat ${seatLabel(seat.n)} (lab ${seat.lab}) of ${state.recipe}`, async () => {
      try {
        await resetSeat(engines, state, seat, ctx.signal);
      } catch (e) {
        if (ctx.signal.aborted)
          throw new UserError(
            `Interrupted: seat ${seatLabel(seat.n)}'s lab is removed and not started again; ./start.ts classroom reset${classFlag(state.name)} ${seatLabel(seat.n)} starts it.`,
            130,
          );
        throw e;
      }
    });
    ctx.progress.info(`Seat ${seatLabel(seat.n)} is fresh (lab ${seat.lab}); its URL is the same as before.`);
    return 0;
  },
};
