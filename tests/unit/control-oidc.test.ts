import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ControlClient } from "../../src/control/client.ts";
import { parseConfig } from "../../src/control/config.ts";
import { formatKey, newKeyPair } from "../../src/control/keys.ts";
import { authorize } from "../../src/control/oidc.ts";
import { ControlServer } from "../../src/control/server.ts";
import { ROOT } from "../../src/paths.ts";
import { eventually } from "../support/eventually.ts";
import { freePort } from "../support/ports.ts";

/**
 * The builtin server's OIDC login against the lab's real identity provider (src/idp/ on
 * oidc-provider, as its own process) on loopback: a key-less register gets a login URL; the
 * URL leads to the IdP's form, the IdP back to the server's callback, and only the confirmation
 * POST registers the node, to the user the IdP vouched for. Requests are made with fetch and a
 * small cookie jar (the e2e test drives the same pages in Chromium).
 */

const root = mkdtempSync(join(tmpdir(), "wg3-oidc-"));
let idp: ChildProcess;
let ctl: ControlServer;
let serverUrl: string;
let issuer: string;
const clients: ControlClient[] = [];

/** One browser: its cookies by name (paths ignored: every cookie goes back to where it came from). */
class Browser {
  private readonly jar = new Map<string, Map<string, string>>();
  async go(url: string, init: RequestInit = {}): Promise<{ url: string; status: number; body: string }> {
    let target = url;
    let req = init;
    for (let hop = 0; hop < 10; hop++) {
      const host = new URL(target).host;
      const cookies = [...(this.jar.get(host) ?? [])].map(([k, v]) => `${k}=${v}`).join("; ");
      const res = await fetch(target, { ...req, redirect: "manual", headers: { ...(req.headers ?? {}), cookie: cookies } });
      for (const c of res.headers.getSetCookie()) {
        const [kv] = c.split(";");
        const [k, ...v] = kv!.split("=");
        if (!this.jar.has(host)) this.jar.set(host, new Map());
        this.jar.get(host)!.set(k!.trim(), v.join("="));
      }
      const location = res.headers.get("location");
      if (res.status < 300 || res.status >= 400 || !location) return { url: target, status: res.status, body: await res.text() };
      target = new URL(location, target).toString();
      req = {}; // 302/303: the next one is a GET
    }
    throw new Error("too many redirects");
  }
  post(url: string, form: Record<string, string>) {
    return this.go(url, {
      method: "POST",
      body: new URLSearchParams(form).toString(),
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
  }
}

const formAction = (html: string) => /<form[^>]*action="([^"]+)"/.exec(html)?.[1] ?? "";

/** A key-less register: the login URL the server answers with. */
async function loginUrl(hostname: string): Promise<string> {
  const c = await ControlClient.connect({ url: serverUrl });
  clients.push(c);
  const r = await c.register({ nodeKey: formatKey("nodekey", newKeyPair().publicKey), hostname });
  return String(r.AuthURL);
}

/** Through the IdP's form; the page after it. */
async function signIn(b: Browser, url: string, username: string, password: string) {
  const form = await b.go(url);
  expect(new URL(form.url).origin).toBe(issuer);
  return b.post(new URL(formAction(form.body), form.url).toString(), { username, password });
}

beforeAll(async () => {
  const [idpPort, ctlPort] = [await freePort(), await freePort()];
  issuer = `http://127.0.0.1:${idpPort}`;
  serverUrl = `http://127.0.0.1:${ctlPort}`;
  const idpConfig = join(root, "idp.yaml");
  writeFileSync(
    idpConfig,
    [
      `issuer: ${issuer}`,
      `listen: 127.0.0.1:${idpPort}`,
      `clients: [{ client_id: ctl, client_secret: unit-test-secret, redirect_uris: ["${serverUrl}/oidc/callback"] }]`,
      "users:",
      "  - { username: carol, password: carol-pass, name: Carol Admin, email: carol@example.com, groups: [staff, admin] }",
      "  - { username: erin, password: erin-pass, name: Erin, email: erin@example.com, groups: [contractors] }",
    ].join("\n"),
  );
  idp = spawn(process.execPath, ["--import", "tsx", join(ROOT, "src/idp/main.ts"), "--config", idpConfig], { stdio: "ignore" });
  await eventually(
    "the IdP answers discovery",
    async () => (await fetch(`${issuer}/.well-known/openid-configuration`).catch(() => null))?.ok === true,
  );
  ctl = new ControlServer(
    parseConfig(
      [
        `server_url: ${serverUrl}`,
        `listen_addr: 127.0.0.1:${ctlPort}`,
        `state_dir: ${join(root, "state")}`,
        `unix_socket: ${join(root, "admin.sock")}`,
        "dns: { base_domain: tailnet.test }",
        'derp: { server: { enabled: true, stun_listen_addr: "" } }',
        `oidc: { issuer: "${issuer}", client_id: ctl, client_secret: unit-test-secret, scope: [openid, profile, email, groups], allowed_groups: [staff], pkce: { enabled: true } }`,
      ].join("\n"),
    ),
    () => {},
  );
  await ctl.start();
});
afterAll(async () => {
  for (const c of clients) c.close();
  await ctl?.close();
  idp?.kill();
  rmSync(root, { recursive: true, force: true });
});

describe("OIDC login on the builtin server", () => {
  it("a wrong password stays at the IdP; erin (not in staff) is refused by allowed_groups; nothing registers", async () => {
    const url = await loginUrl("laptop-1");
    const wrong = await signIn(new Browser(), url, "carol", "nope");
    expect(wrong.status).toBe(401);
    expect(wrong.body).toContain("Wrong username or password");
    const erin = await signIn(new Browser(), url, "erin", "erin-pass");
    expect(new URL(erin.url).pathname).toBe("/oidc/callback");
    expect(erin.status).toBe(401);
    expect(erin.body).toContain("allowed groups");
    expect(ctl.tailnet.nodes()).toHaveLength(0);
    expect(ctl.tailnet.users()).toHaveLength(0);
  });

  it("carol signs in: a confirmation page (nothing registered yet), and the POST registers the node to her OIDC user", async () => {
    const b = new Browser();
    const confirm = await signIn(b, await loginUrl("laptop-2"), "carol", "carol-pass");
    expect(confirm.status).toBe(200);
    expect(confirm.body).toContain("Confirm node registration");
    expect(ctl.tailnet.nodes()).toHaveLength(0);
    const hidden = /<input type="hidden" name="([^"]+)" value="([^"]+)">/.exec(confirm.body)!;
    const action = new URL(formAction(confirm.body), confirm.url).toString();
    // A forged confirmation (right form, wrong token) is refused.
    expect((await b.post(action, { [hidden[1]!]: "forged" })).status).toBe(403);
    const done = await b.post(action, { [hidden[1]!]: hidden[2]! });
    expect(done.status, done.body).toBe(200);
    const [node] = ctl.tailnet.nodes();
    const user = ctl.tailnet.user(node!.userId)!;
    expect(node!.registerMethod).toBe("oidc");
    expect(user).toMatchObject({ name: "carol", email: "carol@example.com", displayName: "Carol Admin", provider: "oidc" });
    expect(user.providerId).toBe(`${issuer}/carol`);
  });
});

describe("allowed_* as Headscale applies them", () => {
  const cfg = parseConfig(
    'server_url: http://x:1\nlisten_addr: 127.0.0.1:0\ndns: { base_domain: t.test }\noidc: { issuer: "http://idp", client_id: a, client_secret: b }',
  ).oidc!;
  it("no lists: anyone; groups first; domains and users only on a verified email", () => {
    expect(authorize(cfg, { emailVerified: false, groups: [] })).toBeUndefined();
    expect(authorize({ ...cfg, allowedGroups: ["staff"] }, { emailVerified: true, groups: ["x"] })).toMatch(/groups/);
    const domains = { ...cfg, allowedDomains: ["example.com"] };
    expect(authorize(domains, { email: "a@example.com", emailVerified: true, groups: [] })).toBeUndefined();
    expect(authorize(domains, { email: "a@example.com", emailVerified: false, groups: [] })).toMatch(/verified/);
    expect(authorize(domains, { email: "a@evil.com", emailVerified: true, groups: [] })).toMatch(/domain/);
    expect(authorize({ ...cfg, allowedUsers: ["a@example.com"] }, { email: "b@example.com", emailVerified: true, groups: [] })).toMatch(
      /email not allowed/,
    );
  });
});
