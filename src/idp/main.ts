import { createHash, generateKeyPairSync, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import Provider, { type Configuration, type KoaContextWithOIDC } from "oidc-provider";
import { type IdpConfig, type IdpUser, loadIdpConfig } from "./config.ts";
import { loginPage } from "./login-page.ts";

/**
 * The lab's OpenID Connect identity provider: panva's oidc-provider (a certified OP) with the
 * lab's static clients and users, and one page of our own, the username/password form.
 *   idp.mjs --config FILE
 * Keys (signing key, cookie keys) are new at every start; grants and sessions live in memory.
 */

const log = (m: string) => process.stdout.write(`${new Date().toISOString()} ${m}\n`);

/** Equal passwords, compared in constant time (over their digests, so lengths may differ). */
function passwordMatches(user: IdpUser, given: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(user.password), digest(given));
}

function providerConfig(config: IdpConfig): Configuration {
  const signingKey = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" });
  const users = new Map(config.users.map((u) => [u.username, u]));
  return {
    clients: config.clients.map((c) => ({
      ...c,
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    })),
    jwks: { keys: [{ ...signingKey, kid: randomBytes(8).toString("hex"), use: "sig", alg: "RS256" }] },
    cookies: {
      keys: [randomBytes(32).toString("hex")],
      // Plain http in the lab: a SameSite=None cookie needs Secure, so Lax for both kinds.
      long: { httpOnly: true, sameSite: "lax", signed: true },
      short: { httpOnly: true, sameSite: "lax", signed: true },
    },
    responseTypes: ["code"],
    scopes: ["openid", "email", "profile", "groups"],
    claims: {
      email: ["email", "email_verified"],
      profile: ["name", "preferred_username"],
      groups: ["groups"],
    },
    // The ID token carries the granted scopes' claims too, not only the userinfo endpoint.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: (_ctx: KoaContextWithOIDC, sub: string) => {
      const u = users.get(sub);
      if (!u) return undefined;
      return {
        accountId: sub,
        claims: () => ({
          sub,
          email: u.email,
          email_verified: true,
          name: u.name,
          preferred_username: u.username,
          groups: u.groups,
        }),
      };
    },
    ttl: { Session: 3600, Interaction: 900, Grant: 3600, AccessToken: 600, IdToken: 600, AuthorizationCode: 60 },
  };
}

async function formBody(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 8192) throw new Error("form too large");
    chunks.push(c);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

function send(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
  res.end(html);
}

/** GET /interaction/UID (the form, or consent granted at once: the lab's clients are its own) and POST /interaction/UID/login. */
async function interaction(provider: Provider, config: IdpConfig, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  const client = String(details.params.client_id);
  const { prompt } = details;
  if (req.method === "POST" && req.url?.endsWith("/login")) {
    const form = await formBody(req);
    const username = form.get("username") ?? "";
    const user = config.users.find((u) => u.username === username);
    if (!user || !passwordMatches(user, form.get("password") ?? "")) {
      log(`login refused for "${username}" (${client})`);
      send(res, 401, loginPage({ uid: details.uid, client, username, error: "Wrong username or password." }));
      return;
    }
    log(`login: ${username} (${client})`);
    await provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === "login") {
    send(res, 200, loginPage({ uid: details.uid, client }));
    return;
  }
  if (prompt.name === "consent") {
    const accountId = details.session?.accountId;
    if (!accountId) throw new Error("consent without a session");
    const grant = details.grantId
      ? ((await provider.Grant.find(details.grantId)) ?? new provider.Grant({ accountId, clientId: client }))
      : new provider.Grant({ accountId, clientId: client });
    const missing = prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  send(res, 400, `unsupported prompt ${prompt.name}`);
}

async function main(argv: string[]): Promise<void> {
  const i = argv.indexOf("--config");
  const config = loadIdpConfig(i >= 0 ? argv[i + 1]! : "/etc/wg3-idp/config.yaml");
  const provider = new Provider(config.issuer, providerConfig(config));
  provider.on("server_error", (_ctx, err) => log(`server error: ${err.message}`));
  provider.on("grant.success", (ctx) => log(`tokens issued to ${ctx.oidc.client?.clientId}`));
  const oidc = provider.callback();
  const server = createServer((req, res) => {
    if (!req.url?.startsWith("/interaction/")) return void oidc(req, res);
    interaction(provider, config, req, res).catch((e: Error) => {
      log(`interaction failed: ${e.message}`);
      if (!res.headersSent) send(res, 400, `<p>${e.name}: the login session is over or invalid; start again from the login URL.</p>`);
    });
  });
  const [host, port] = config.listen.split(":");
  server.listen(Number(port), host, () => log(`OpenID provider ${config.issuer} listening on ${config.listen}`));
  const stop = (sig: string) => {
    log(`${sig}: shutting down`);
    server.close(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main(process.argv.slice(2)).catch((e: Error) => {
  process.stderr.write(`idp: ${e.message}\n`);
  process.exit(1);
});
