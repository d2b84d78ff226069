import { rmSync } from "node:fs";
import { join } from "node:path";
import { removeAllFirewalls } from "../../classroom/firewall.ts";
import { listClasses, readClass } from "../../classroom/state.ts";
import { stateDir } from "../../paths.ts";
import { closeAllWorkspaces } from "../../workspace/mux.ts";
import { type Command, engineFor, out } from "../command.ts";
import { stopServer } from "./classroom-down.ts";

export const cleanCommand: Command = {
  name: "clean",
  usage: "clean [--all]",
  summary: "remove everything the harness made (found by labels): labs, classes and their servers, tmux sessions, state",
  flags: [{ name: "all", help: "also remove the images (the Go binaries stay cached in ~/.cache/wg-3-ways)" }],
  async run(p, ctx) {
    const engine = await engineFor(ctx);
    // A class's web server would otherwise go on serving seats that no longer exist.
    for (const name of listClasses()) {
      const server = readClass(name)?.server;
      if (server) await stopServer(server.pid, name);
    }
    await closeAllWorkspaces();
    const r = await engine.removeLabelled();
    const tables = await removeAllFirewalls();
    for (const part of ["labs", "classroom"]) rmSync(join(stateDir(), part), { recursive: true, force: true });
    let images = 0;
    if (p.flags.all) for (const img of await engine.listImages()) if (await engine.removeImage(img.id, true)) images++;
    out(
      `removed ${r.containers} containers, ${r.networks} networks, ${r.volumes} volumes${tables ? `, ${tables} classroom firewall tables` : ""}${p.flags.all ? `, ${images} images` : ""}.`,
    );
    return 0;
  },
};
