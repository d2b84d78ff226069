import type { IncomingMessage, ServerResponse } from "node:http";
import { type BaseClient, generators, Issuer, type TokenSet } from "openid-client";
import type { OidcConfig } from "./config.ts";

/**
 * Interactive logins through an OpenID Connect provider, as Headscale's `oidc:` does them, on
 * panva's openid-client (discovery, the authorization-code flow with state, nonce and PKCE,
 * ID token validation, userinfo):
 *   GET /register/ID     -> a state cookie, and a redirect to the provider's authorization URL
 *   GET /oidc/callback   -> the code exchanged and checked; allowed_* applied; the user found or
 *                           made; a confirmation page (a CSRF token in a cookie and the form)
 *   POST /register/confirm/ID -> the pending login approved for that user
 * Nothing registers on a GET: a silent single sign-on cannot add a node without a click.
 */

/** What the provider vouched for, as the control server keeps it. */
export interface OidcIdentity {
  providerId: string;
  username?: string;
  email?: string;
  displayName?: string;
}

/** What the server lends this module: its pending logins and its users. */
export interface OidcHost {
  serverUrl: string;
  /** The pending login's hostname, or undefined when it is gone (expired, or done). */
  pendingHostname(loginId: string): string | undefined;
  /** The user for an identity (found or made); its id and the name clients will show. */
  userFor(identity: OidcIdentity): { id: number; shown: string };
  approve(loginId: string, userId: number): Promise<void>;
  log(m: string): void;
}

interface Flow {
  loginId: string;
  nonce: string;
  verifier: string;
  created: number;
}

interface Confirmation {
  userId: number;
  csrf: string;
  created: number;
}

const STATE_COOKIE = "wg3_oidc_state";
const CSRF_COOKIE = "wg3_register_confirm";
const MAX_FLOWS = 1024;
const FLOW_TTL = 15 * 60_000;

export class OidcError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A bounded map, oldest first out, entries older than the TTL gone (anyone can start a login). */
class Bounded<T extends { created: number }> {
  private readonly m = new Map<string, T>();
  set(k: string, v: T): void {
    this.m.delete(k);
    this.m.set(k, v);
    while (this.m.size > MAX_FLOWS) this.m.delete(this.m.keys().next().value as string);
  }
  take(k: string): T | undefined {
    const v = this.m.get(k);
    this.m.delete(k);
    return v && Date.now() - v.created < FLOW_TTL ? v : undefined;
  }
  peek(k: string): T | undefined {
    const v = this.m.get(k);
    return v && Date.now() - v.created < FLOW_TTL ? v : undefined;
  }
}

export const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

function page(res: ServerResponse, status: number, title: string, body: string, cookies: string[] = []): void {
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    ...(cookies.length ? { "set-cookie": cookies } : {}),
  });
  res.end(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body>${body}</body></html>\n`,
  );
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of String(req.headers.cookie ?? "").split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return v.join("=");
  }
  return undefined;
}

async function formBody(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 4096) throw new OidcError(413, "form too large");
    chunks.push(c);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

/** Headscale's allowed_groups, then allowed_domains and allowed_users (on a verified email). */
export function authorize(cfg: OidcConfig, c: { email?: string; emailVerified: boolean; groups: string[] }): string | undefined {
  if (cfg.allowedGroups.length && !cfg.allowedGroups.some((g) => c.groups.includes(g)))
    return "not in any of the allowed groups (oidc.allowed_groups)";
  if (!cfg.allowedDomains.length && !cfg.allowedUsers.length) return undefined;
  if (!c.email || (cfg.emailVerifiedRequired && !c.emailVerified)) return "no verified email";
  const domain = c.email.slice(c.email.lastIndexOf("@") + 1);
  if (cfg.allowedDomains.length && (!c.email.includes("@") || !cfg.allowedDomains.includes(domain)))
    return "email domain not allowed (oidc.allowed_domains)";
  if (cfg.allowedUsers.length && !cfg.allowedUsers.includes(c.email)) return "email not allowed (oidc.allowed_users)";
  return undefined;
}

export class OidcLogins {
  private client?: Promise<BaseClient>;
  private readonly flows = new Bounded<Flow>();
  private readonly confirmations = new Bounded<Confirmation>();

  constructor(
    private readonly cfg: OidcConfig,
    private readonly host: OidcHost,
  ) {}

  private get redirectUri(): string {
    return `${this.host.serverUrl.replace(/\/$/, "")}/oidc/callback`;
  }

  /** The provider, discovered at the first login (and again after a failed discovery). */
  private provider(): Promise<BaseClient> {
    this.client ??= Issuer.discover(this.cfg.issuer).then(
      (issuer) =>
        new issuer.Client({
          client_id: this.cfg.clientId,
          client_secret: this.cfg.clientSecret,
          redirect_uris: [this.redirectUri],
          response_types: ["code"],
        }),
      (e: Error) => {
        this.client = undefined;
        throw new OidcError(502, `the identity provider ${this.cfg.issuer} cannot be reached: ${e.message}`);
      },
    );
    return this.client;
  }

  /** GET /register/ID: off to the provider. */
  async start(loginId: string, res: ServerResponse): Promise<void> {
    const client = await this.provider();
    const state = generators.state();
    const flow: Flow = { loginId, nonce: generators.nonce(), verifier: generators.codeVerifier(), created: Date.now() };
    this.flows.set(state, flow);
    const url = client.authorizationUrl({
      scope: this.cfg.scope.join(" "),
      state,
      nonce: flow.nonce,
      ...(this.cfg.pkce ? { code_challenge: generators.codeChallenge(flow.verifier), code_challenge_method: "S256" } : {}),
    });
    res.writeHead(302, {
      location: url,
      "set-cookie": `${STATE_COOKIE}=${state}; Path=/oidc/callback; Max-Age=900; HttpOnly; Secure; SameSite=Lax`,
    });
    res.end();
  }

  /** GET /oidc/callback: who the provider says it is; a confirmation page for the pending login. */
  async callback(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const client = await this.provider();
    const params = client.callbackParams(req);
    if (params.error) throw new OidcError(401, `the identity provider refused: ${params.error_description ?? params.error}`);
    const state = String(params.state ?? "");
    if (!state || cookie(req, STATE_COOKIE) !== state) throw new OidcError(400, "state does not match this browser's login");
    const flow = this.flows.take(state);
    if (!flow) throw new OidcError(410, "login session expired, try again");
    let tokens: TokenSet;
    try {
      tokens = await client.callback(this.redirectUri, params, {
        state,
        nonce: flow.nonce,
        ...(this.cfg.pkce ? { code_verifier: flow.verifier } : {}),
      });
    } catch (e) {
      throw new OidcError(401, `the login could not be verified: ${(e as Error).message}`);
    }
    const claims: Record<string, unknown> = { ...tokens.claims() };
    try {
      const info = await client.userinfo(tokens);
      if (info.sub === claims.sub) Object.assign(claims, info);
    } catch (e) {
      this.host.log(`oidc: no userinfo (${(e as Error).message}); the ID token's claims only`);
    }
    const email = typeof claims.email === "string" ? claims.email : undefined;
    const emailVerified = claims.email_verified === true || claims.email_verified === "true";
    const groups = Array.isArray(claims.groups) ? claims.groups.map(String) : [];
    const refused = authorize(this.cfg, { email, emailVerified, groups });
    if (refused) {
      this.host.log(`oidc: ${email ?? claims.sub} refused: ${refused}`);
      throw new OidcError(401, `unauthorised: ${refused}`);
    }
    const hostname = this.host.pendingHostname(flow.loginId);
    if (hostname === undefined) throw new OidcError(410, "registration session expired, try again");
    const user = this.host.userFor({
      providerId: `${tokens.claims().iss}/${claims.sub}`,
      username: typeof claims.preferred_username === "string" ? claims.preferred_username : undefined,
      email: email && (emailVerified || !this.cfg.emailVerifiedRequired) ? email : undefined,
      displayName: typeof claims.name === "string" ? claims.name : undefined,
    });
    const csrf = generators.random(32);
    this.confirmations.set(flow.loginId, { userId: user.id, csrf, created: Date.now() });
    const action = `/register/confirm/${flow.loginId}`;
    page(
      res,
      200,
      "Confirm node registration",
      `<h2>Confirm node registration</h2><p>A device is asking to be added to your tailnet.</p>` +
        `<table><tr><td>Hostname</td><td>${escapeHtml(hostname)}</td></tr><tr><td>Registered to</td><td>${escapeHtml(user.shown)}</td></tr></table>` +
        `<form method="POST" action="${action}"><input type="hidden" name="${CSRF_COOKIE}" value="${csrf}">` +
        `<button type="submit">Confirm registration</button></form>`,
      [`${CSRF_COOKIE}=${csrf}; Path=${action}; Max-Age=900; HttpOnly; Secure; SameSite=Strict`],
    );
  }

  /** POST /register/confirm/ID: the click that registers the node. */
  async confirm(loginId: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await formBody(req);
    const pending = this.confirmations.peek(loginId);
    const given = form.get(CSRF_COOKIE);
    if (!pending || !given || given !== cookie(req, CSRF_COOKIE) || given !== pending.csrf)
      throw new OidcError(403, "this confirmation is not the one this browser was shown");
    this.confirmations.take(loginId);
    await this.host.approve(loginId, pending.userId);
    page(res, 200, "Registered", "<h2>Node registered</h2><p>You can close this window.</p>");
  }
}
