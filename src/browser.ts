import { existsSync } from "node:fs";
import { installPackages, isRoot } from "./engine/ensure.ts";
import { UserError } from "./errors.ts";
import type { Progress } from "./ui/progress.ts";

/** Where Debian's and Ubuntu's chromium packages put the browser; WG3_CHROMIUM names another. */
const CHROMIUM_PATHS = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

export function chromiumPath(): string | undefined {
  if (process.env.WG3_CHROMIUM) return existsSync(process.env.WG3_CHROMIUM) ? process.env.WG3_CHROMIUM : undefined;
  return CHROMIUM_PATHS.find((p) => existsSync(p));
}

/**
 * The browser the classroom's tests drive headless (through puppeteer-core, which brings no
 * browser of its own): Debian's chromium, installed with apt-get when it is missing. `setup`
 * and the e2e tests' global setup both come here, so a fresh machine's `npm test` has it.
 */
export async function ensureChromium(opts: { yes?: boolean; progress?: Progress }): Promise<string> {
  const found = chromiumPath();
  if (found) return found;
  if (!isRoot())
    throw new UserError("chromium is not installed (the classroom's browser tests need it): apt-get install chromium, as root.");
  opts.progress?.info("chromium is missing: installing Debian's chromium (the classroom's browser tests drive it headless).");
  await installPackages(opts, ["chromium"]);
  const installed = chromiumPath();
  if (!installed) throw new UserError(`apt-get installed chromium, but none of ${CHROMIUM_PATHS.join(", ")} exists.`);
  return installed;
}
