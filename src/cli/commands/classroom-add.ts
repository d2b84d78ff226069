import { ensureNft } from "../../classroom/firewall.ts";
import { addSeat } from "../../classroom/seats.ts";
import { MAX_SEATS, nextFreeSeat, seatLabel, seatOf } from "../../classroom/state.ts";
import { UserError } from "../../errors.ts";
import type { Command } from "../command.ts";
import { existingClass, seatArgument } from "./classroom-status.ts";
import { CLASS_FLAG, classEngines, classFlag } from "./classroom-up.ts";

export const classroomAddCommand: Command = {
  name: "classroom add",
  usage: "classroom add [SEAT] [--class NAME]",
  summary: "one more seat for a class (the next free number, or SEAT): its own lab and token",
  details:
    "Starts the seat's lab as classroom up would, keeps it off the host like the others, then adds it (with a\n" +
    "new token) to the class: a running server serves it at once. Its URL: ./start.ts classroom status --urls.",
  flags: [CLASS_FLAG],
  async run(p, ctx) {
    const state = existingClass(p);
    const n = seatArgument(p, "add", false) ?? nextFreeSeat(state);
    if (n === undefined) throw new UserError(`Class ${state.name} has all ${MAX_SEATS} seats already.`, 2);
    if (seatOf(state, n))
      throw new UserError(
        `Class ${state.name} has a seat ${seatLabel(n)} already; ./start.ts classroom add${classFlag(state.name)} takes the next free number.`,
        2,
      );
    const engines = await classEngines(ctx, state);
    if (engines.all().some((e) => e.dockerHost.startsWith("unix://"))) await ensureNft({ progress: ctx.progress });
    const seat = await ctx.progress.step(`add seat ${seatLabel(n)} (lab ${state.name}-${seatLabel(n)}) of ${state.recipe}`, async () => {
      try {
        return await addSeat(engines, state, n, ctx.signal, ctx.progress);
      } catch (e) {
        if (ctx.signal.aborted)
          throw new UserError(`Interrupted: seat ${seatLabel(n)} was not added, and what its start made is removed.`, 130);
        throw e;
      }
    });
    ctx.progress.info(
      `Seat ${seatLabel(seat.n)} is up (lab ${seat.lab}). Its URL (it carries the seat's token): ./start.ts classroom status${classFlag(state.name)} --urls`,
    );
    return 0;
  },
};
