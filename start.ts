#!/bin/sh
//bin/true; d=$(dirname "$(readlink -f "$0")"); [ -f "$d/node_modules/tsx/dist/loader.mjs" ] || { echo "start.ts: run \`npm install\` in $d first (it needs Node.js >= 20 and npm)." >&2; exit 1; }; exec node --no-warnings=ExperimentalWarning "$d/scripts/launch.mjs" "$@"
// The two lines above let `./start.ts` run from any directory: sh runs them (through
// scripts/launch.mjs, which runs a bundle of the CLI), TypeScript sees a shebang and a comment.
// Below is the same entry point for `tsx start.ts`.
import { main } from "./src/cli/main.ts";

process.exitCode = await main(process.argv.slice(2));
