#!/bin/sh
//bin/true; d=$(dirname "$(readlink -f "$0")"); [ -f "$d/node_modules/tsx/dist/loader.mjs" ] || { echo "start.ts: run \`npm install\` in $d first (it needs Node.js >= 20 and npm)." >&2; exit 1; }; exec node --no-warnings=ExperimentalWarning --import "$d/node_modules/tsx/dist/loader.mjs" "$0" "$@"
// The two lines above let `./start.ts` run from any directory: sh runs them, TypeScript
// sees a shebang and a comment. Everything below is the real entry point.
import { main } from "./src/cli/main.ts";

process.exitCode = await main(process.argv.slice(2));
