import { removeFirewall } from "../../classroom/firewall.ts";
import { removeClass } from "../../classroom/seats.ts";
import { readClass } from "../../classroom/state.ts";
import { UserError } from "../../errors.ts";
import { type Command, engineFor } from "../command.ts";
import { noClass } from "./classroom-status.ts";
import { CLASS_FLAG, classEngines, classOf, seatCount, serverRunning } from "./classroom-up.ts";

/** Stop the class's server (its `classroom up`, by its pid) and wait, bounded, until it is gone. */
export async function stopServer(pid: number, className: string): Promise<void> {
  if (pid === process.pid || !serverRunning(pid, className)) return;
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + 20_000;
  while (serverRunning(pid, className)) {
    if (Date.now() > deadline)
      throw new UserError(`The class's server (pid ${pid}) did not stop within 20 s of SIGTERM; nothing was removed.`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const classroomDownCommand: Command = {
  name: "classroom down",
  usage: "classroom down [--class NAME]",
  summary: "stop a class's server and remove every seat (found by the class's label) and its secrets",
  flags: [CLASS_FLAG],
  async run(p, ctx) {
    const name = classOf(p);
    const state = readClass(name);
    const engine = await engineFor(ctx);
    if (!state) {
      // No state (removed by hand?): still sweep whatever carries the class's label.
      const r = await engine.removeLabelled({ classroom: name });
      await removeFirewall(name);
      if (!r.containers && !r.networks && !r.volumes) throw noClass(name);
      ctx.progress.info(`removed ${r.containers} containers, ${r.networks} networks and ${r.volumes} volumes of class ${name}.`);
      return 0;
    }
    if (state.server) await stopServer(state.server.pid, name);
    const engines = await classEngines(ctx, state, engine);
    const r = await ctx.progress.step(`remove class ${name} (${seatCount(state)} of ${state.recipe})`, () => removeClass(engines, state));
    ctx.progress.info(`removed ${r.containers} containers, ${r.networks} networks and ${r.volumes} volumes; class ${name} is gone.`);
    return 0;
  },
};
