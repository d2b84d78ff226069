import { prerequisites } from "../../doctor.ts";
import { type Command, out } from "../command.ts";

export const doctorCommand: Command = {
  name: "doctor",
  usage: "doctor",
  summary: "check every prerequisite: ok / missing / how to fix; exit 0 only when a lab can start",
  flags: [],
  async run() {
    const findings = await prerequisites();
    const mark = { ok: "ok     ", missing: "MISSING", warn: "warn   " };
    for (const f of findings) {
      out(`${mark[f.status]}  ${f.name}: ${f.detail}`);
      if (f.fix && f.status !== "ok") out(`         fix: ${f.fix}`);
    }
    const bad = findings.filter((f) => f.status === "missing");
    out(bad.length ? `\n${bad.length} missing: a lab cannot start yet.` : "\nA lab can start.");
    return bad.length ? 1 : 0;
  },
};
