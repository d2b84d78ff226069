/**
 * Recipe-5's OIDC exercise: `tailscale up` without a key prints a login URL; a real browser
 * (Debian's chromium, headless, through puppeteer-core) opens it, signs in at the lab's identity
 * provider (oidc-provider in the idp container) and confirms at the control server; carol's
 * laptop then belongs to the user the IdP vouched for, and a policy naming that identity makes
 * her an admin. Against Headscale and the builtin control server. Screenshots: .cache/oidc/.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromiumPath, ensureChromium } from "../../src/browser.ts";
import { ROOT } from "../../src/paths.ts";
import { mistakesShown } from "../support/check-json.ts";
import type { ControlNode } from "../support/control-server.ts";
import { eventually } from "../support/eventually.ts";
import { LabHandle } from "../support/lab-handle.ts";
import { testLabName } from "../support/labs.ts";
import { TIMEOUT } from "../support/timeouts.ts";

const controls = (process.env.WG3_CONTROLS ?? "headscale,builtin").split(",");
const SHOTS = join(ROOT, ".cache", "oidc");

interface OwnedNode extends ControlNode {
  user?: { name?: string; email?: string; provider?: string };
}

describe.each(controls)("recipe-5 with --control %s: OIDC login through the lab's identity provider", (control) => {
  let lab: LabHandle;
  let browser: Browser;
  const labName = testLabName(`r5o-${control.slice(0, 2)}`);
  const email = () => `carol@${lab.plan.vars.baseDomain}`;
  const serverUrl = () => `https://${lab.ip("headscale", "internet")}`;
  const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `${control}-${name}.png`) });

  const nodes = async () => JSON.parse((await lab.sh("headscale", "headscale nodes list -o json")).stdout || "[]") as OwnedNode[];
  const carolNode = async () => (await nodes()).find((n) => n.given_name === "carol");

  /**
   * `tailscale up` on carol's laptop without a key, in the background (it waits for the login);
   * the login URL it printed. One login for the whole file, as at a real laptop: a wrong
   * password or the wrong person at the IdP leaves it waiting.
   */
  let url = "";
  const loginUrl = async (): Promise<string> => {
    if (url) return url;
    const log = "/root/tailscale-up.log";
    const up = `tailscale up --login-server ${serverUrl()} --hostname carol --timeout 600s`;
    expect((await lab.sh("ts-carol", `(setsid ${up} >${log} 2>&1 &)`)).exitCode).toBe(0);
    await eventually("carol: tailscale up prints a login URL", async () => {
      url = /https:\/\/\S+\/register\/\S+/.exec((await lab.sh("ts-carol", `cat ${log}`)).stdout)?.[0] ?? "";
      return url !== "";
    });
    return url;
  };

  /** Open a login URL in a fresh browser context and sign in at the IdP's form; the page after the form. */
  const signIn = async (url: string, username: string, password: string): Promise<Page> => {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    await page.goto(url, { waitUntil: "load" });
    // The control server sent the browser to the identity provider's sign-in form.
    expect(new URL(page.url()).host).toBe(lab.ip("idp", "internet"));
    await page.type("#username", username);
    await page.type("#password", password);
    await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("#submit")]);
    return page;
  };

  /** The state-aware hints (`mistakes`) `./start.ts check --json` shows for the exercise now. */
  const mistakes = async () => (await mistakesShown(lab, "oidc")).join(" | ");

  const bodyText = (page: Page) => page.evaluate(() => document.body.textContent ?? "");

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    lab = await LabHandle.start("recipe-5", { lab: labName, options: { control } });
    browser = await puppeteer.launch({
      executablePath: chromiumPath() ?? (await ensureChromium({ yes: true })),
      headless: true,
      // The control server's certificate is signed by this lab's own CA, new at every start.
      acceptInsecureCerts: true,
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await lab?.stop();
  });

  it("oidc: before any login the check fails and carol has no node (negative control)", async () => {
    expect((await lab.check("oidc")).ok).toBe(false);
    expect(await carolNode()).toBeUndefined();
    expect(await mistakes()).toContain("carol is not logged in yet");
  });

  it("oidc: a wrong password is refused at the IdP's form, and nothing registers", async () => {
    const page = await signIn(await loginUrl(), "carol", "not-her-password");
    expect(await page.$eval("#error", (e) => e.textContent)).toContain("Wrong username or password");
    await shot(page, "1-wrong-password");
    await page.browserContext().close();
    expect(await carolNode()).toBeUndefined();
  });

  it("oidc: erin signs in at the IdP but is no member of `staff` (allowed_groups): the control server refuses her", async () => {
    // At carol's laptop, the URL it printed: whoever signs in at the IdP would own it.
    const page = await signIn(await loginUrl(), "erin", "erin-pass");
    await shot(page, "2-erin-refused");
    const text = await bodyText(page);
    console.log(`[${control}] erin after the IdP: ${page.url()}\n${text.slice(0, 300)}`);
    // Headscale says only "Unauthorized" to the browser (its log names the group); the builtin says why.
    expect(text).toMatch(/unauthori[sz]ed/i);
    expect(await page.$("form")).toBeNull(); // no confirmation form for her
    await page.browserContext().close();
    expect(await carolNode()).toBeUndefined();
  });

  it("oidc: Chromium opens the URL tailscale up printed, carol signs in and confirms; her laptop comes up as her OIDC identity", async () => {
    const page = await signIn(await loginUrl(), "carol", "carol-pass");
    // Back at the control server: a confirmation page, before anything is registered.
    expect(new URL(page.url()).host).toBe(lab.ip("headscale", "internet"));
    await shot(page, "3-confirm");
    expect(await carolNode()).toBeUndefined();
    await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("form button[type=submit]")]);
    await shot(page, "4-registered");
    console.log(`[${control}] after confirming: ${(await bodyText(page)).slice(0, 200)}`);
    await page.browserContext().close();

    await eventually("carol's laptop Running", () =>
      lab.succeeds("ts-carol", `tailscale status --json | grep -q '"BackendState": *"Running"'`),
    );
    const node = (await carolNode())!;
    console.log(`[${control}] carol's node: id ${node.id}, user ${JSON.stringify(node.user)}`);
    expect(node.user?.email).toBe(email());
    expect(node.user?.provider).toBe("oidc");
    const whois = (await lab.sh("ts-carol", "tailscale whois --json $(tailscale ip -4)")).stdout;
    expect(JSON.parse(whois).UserProfile.LoginName).toBe(email());
  });

  it("oidc: a policy naming carol by her OIDC email makes her an admin (22), bob stays out; the check passes", async () => {
    const ssh = (node: string) => lab.succeeds(node, "nc -z -w 2 $(tailscale ip -4 server) 22");
    // Negative control: logged in, and no policy yet (allow all): bob reaches 22 too, the check fails.
    expect(await ssh("ts-bob")).toBe(true);
    expect((await lab.check("oidc")).ok).toBe(false);
    expect(await mistakes()).toContain("no policy in force names her");
    // Exercise 1's reference policy, which names no carol: she is a member (80), no admin (22).
    await lab.solve("policy");
    expect(await ssh("ts-carol")).toBe(false);
    expect(await lab.succeeds("ts-carol", "nc -z -w 2 $(tailscale ip -4 server) 80")).toBe(true);
    expect((await lab.check("oidc")).ok).toBe(false);
    // The same policy with carol@ in group:admin, as her IdP login named her.
    const set = await lab.sh("headscale", "headscale policy set -f /root/oidc.hujson");
    expect(set.exitCode, set.stdout + set.stderr).toBe(0);
    await eventually("carol reaches the server's 22", () => ssh("ts-carol"), { timeout: TIMEOUT.converge });
    expect(await ssh("ts-bob")).toBe(false);
    const result = await lab.check("oidc");
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect(await mistakes()).toBe("");
  });
});
