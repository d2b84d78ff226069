import { UserError } from "../errors.ts";

export interface FlagSpec {
  name: string;
  /** Takes a value (`--lab NAME`) rather than being a switch (`--json`). */
  value?: string;
  help: string;
}

export interface Parsed {
  positionals: string[];
  flags: Record<string, string | boolean>;
  /** Everything after `--`. */
  rest: string[];
}

/** Parse `args` against the flags one command accepts; an unknown flag is one clear sentence. */
export function parseArgs(args: string[], specs: FlagSpec[], command: string): Parsed {
  const out: Parsed = { positionals: [], flags: {}, rest: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      out.rest = args.slice(i + 1);
      break;
    }
    if (a.startsWith("--") || (a.startsWith("-") && a.length === 2)) {
      const [rawName, inline] = a.replace(/^--?/, "").split(/=(.*)/s, 2) as [string, string | undefined];
      const name = rawName === "h" ? "help" : rawName === "y" ? "yes" : rawName === "v" ? "verbose" : rawName;
      const spec = specs.find((s) => s.name === name);
      if (!spec) {
        throw new UserError(`Unknown option ${a} for \`${command}\`; see ./start.ts ${command === "start" ? "" : `${command} `}--help.`, 2);
      }
      if (spec.value) {
        const v = inline ?? args[++i];
        if (v === undefined || v.startsWith("--")) throw new UserError(`--${name} needs a value (${spec.value}).`, 2);
        out.flags[name] = v;
      } else {
        out.flags[name] = true;
      }
      continue;
    }
    out.positionals.push(a);
  }
  return out;
}
