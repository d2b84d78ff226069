import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import * as acme from "acme-client";
import axios, { type AxiosAdapter } from "axios";

/**
 * A certificate for tls_letsencrypt_hostname from an ACME CA (Let's Encrypt, or the lab's
 * pebble), with acme-client doing the protocol. Ordered at start and again when a TLS client
 * asks for the name while there is none (Headscale orders on that first connection), retried
 * with backoff while the CA cannot validate us, kept in the cache dir so a restart does not
 * order again, and renewed before it expires.
 */
export interface AcmeConfig {
  hostname: string;
  /** The account's contact; empty: none (the CA may allow that). */
  email: string;
  /** The CA's directory URL (Headscale's acme_url). */
  directoryUrl: string;
  /** Where the CA's HTTP-01 validation connects (Headscale's tls_letsencrypt_listen, ":http"). */
  httpListen: { host: string; port: number };
  /** Account key, certificate and its key, mode 0600 in a 0700 directory. */
  cacheDir: string;
}

type Log = (m: string) => void;

/** After a failed order the next waits this long, doubling per failure up to MAX. */
const RETRY_MIN_MS = 10_000;
const RETRY_MAX_MS = 10 * 60_000;
/** A TLS client asking for the name orders at once, but not sooner than this after the last try. */
const ON_DEMAND_SPACING_MS = 15_000;
/** A handshake waits this long for an order in flight (the client's own timeout is longer). */
const HANDSHAKE_WAIT_MS = 8_000;
/** setTimeout's limit (about 24.8 days): a later renewal is re-armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Delay before the next order after `failures` failed ones in a row. */
export function retryDelay(failures: number): number {
  return Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.max(0, failures - 1));
}

/** When to renew: a third of the lifetime before expiry (30 of Let's Encrypt's 90 days), at most 30 days before. */
export function renewalTime(notBefore: Date, notAfter: Date): Date {
  const life = notAfter.getTime() - notBefore.getTime();
  return new Date(notAfter.getTime() - Math.min(30 * 86_400_000, life / 3));
}

interface Held {
  context: tls.SecureContext;
  notBefore: Date;
  notAfter: Date;
}

export class AcmeCertificates {
  private held: Held | undefined;
  private ordering: Promise<boolean> | undefined;
  private lastTryEnded = 0;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private challengeServer: http.Server | undefined;
  /** HTTP-01 tokens being validated -> key authorizations. */
  private readonly tokens = new Map<string, string>();
  private readonly certPath: string;
  private readonly keyPath: string;

  constructor(
    readonly config: AcmeConfig,
    private readonly log: Log,
    /** The roots the CA's API is checked against (SSL_CERT_FILE's, as Go programs read it); default: Node's. */
    apiRoots?: Buffer,
    /** The time certificates are judged at (tests move it towards expiry). */
    private readonly now: () => number = Date.now,
  ) {
    // acme-client talks to the CA through its own axios instance.
    if (apiRoots) acme.axios.defaults.httpsAgent = new https.Agent({ ca: apiRoots });
    acme.axios.defaults.adapter = failFastTransport;
    this.certPath = join(config.cacheDir, `${config.hostname}.crt`);
    this.keyPath = join(config.cacheDir, `${config.hostname}.key`);
  }

  /** Starts the HTTP-01 listener and loads the stored certificate, ordering one unless it is good. */
  async start(): Promise<{ httpPort: number }> {
    mkdirSync(this.config.cacheDir, { recursive: true, mode: 0o700 });
    this.challengeServer = http.createServer((req, res) => this.onChallengeRequest(req, res));
    const { host, port } = this.config.httpListen;
    await new Promise<void>((resolve, reject) => {
      this.challengeServer!.once("error", reject);
      this.challengeServer!.listen(port, host || undefined, () => resolve());
    });
    this.loadStored();
    if (this.held && renewalTime(this.held.notBefore, this.held.notAfter).getTime() > this.now()) {
      this.log(`acme: using the stored certificate for ${this.config.hostname} (expires ${this.held.notAfter.toISOString()})`);
      this.scheduleRenewal();
    } else {
      void this.order(this.held ? "renewal due" : "no certificate yet");
    }
    return { httpPort: (this.challengeServer.address() as AddressInfo).port };
  }

  close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    return new Promise((r) => (this.challengeServer ? this.challengeServer.close(() => r()) : r()));
  }

  /** The https server's SNICallback: the certificate for our name, ordered now if there is none. */
  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
    if (this.held) return cb(null, this.held.context);
    if (servername.toLowerCase() !== this.config.hostname) return cb(new Error(`no certificate for ${servername}`));
    if (!this.ordering && Date.now() - this.lastTryEnded >= ON_DEMAND_SPACING_MS) void this.order("a TLS client asked for it");
    const wait = this.ordering ?? Promise.resolve(false);
    const timeout = new Promise<false>((r) => setTimeout(() => r(false), HANDSHAKE_WAIT_MS).unref());
    void Promise.race([wait, timeout]).then(() =>
      this.held ? cb(null, this.held.context) : cb(new Error(`no certificate for ${servername} yet`)),
    );
  };

  /** Port 80: the CA's HTTP-01 requests; anything else goes to https, as Headscale's listener does. */
  private onChallengeRequest(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(path);
    if (m) {
      const keyAuth = this.tokens.get(m[1]!);
      res.writeHead(keyAuth ? 200 : 404, { "content-type": "text/plain" });
      return void res.end(keyAuth ?? "no such challenge\n");
    }
    const host = (req.headers.host ?? this.config.hostname).replace(/:\d+$/, "");
    res.writeHead(302, { location: `https://${host}${req.url ?? "/"}` });
    res.end();
  }

  private loadStored(): void {
    if (!existsSync(this.certPath) || !existsSync(this.keyPath)) return;
    try {
      this.hold(readFileSync(this.certPath, "utf8"), readFileSync(this.keyPath, "utf8"));
    } catch (e) {
      this.log(`acme: ignoring the stored certificate ${this.certPath}: ${(e as Error).message}`);
    }
  }

  private hold(certPem: string, keyPem: string): void {
    const info = acme.crypto.readCertificateInfo(certPem);
    const names = [info.domains.commonName, ...info.domains.altNames].map((n) => n?.toLowerCase());
    if (!names.includes(this.config.hostname)) throw new Error(`it is for ${names.filter(Boolean).join(", ")}`);
    if (info.notAfter.getTime() <= this.now()) throw new Error(`it expired ${info.notAfter.toISOString()}`);
    this.held = { context: tls.createSecureContext({ cert: certPem, key: keyPem }), notBefore: info.notBefore, notAfter: info.notAfter };
  }

  /** One order at a time; true when a certificate was issued. */
  private order(why: string): Promise<boolean> {
    clearTimeout(this.timer);
    this.ordering ??= this.orderOnce(why).finally(() => {
      this.ordering = undefined;
      this.lastTryEnded = Date.now();
    });
    return this.ordering;
  }

  private async orderOnce(why: string): Promise<boolean> {
    const { hostname, directoryUrl } = this.config;
    this.log(`acme: ordering a certificate for ${hostname} from ${directoryUrl} (${why})`);
    try {
      const client = new acme.Client({ directoryUrl, accountKey: await this.accountKey(), backoffMin: 1_000, backoffMax: 5_000 });
      const key = await acme.crypto.createPrivateEcdsaKey();
      const [, csr] = await acme.crypto.createCsr({ commonName: hostname, altNames: [hostname] }, key);
      const cert = await client.auto({
        csr,
        email: this.config.email || undefined,
        termsOfServiceAgreed: true,
        challengePriority: ["http-01"],
        // The CA's own validation is the one that counts (a self-check from inside the
        // firewall would pass where the CA's fails).
        skipChallengeVerification: true,
        challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
          this.tokens.set(challenge.token, keyAuthorization);
        },
        challengeRemoveFn: async (_authz, challenge) => {
          this.tokens.delete(challenge.token);
        },
      });
      this.store(cert, key.toString());
      this.hold(cert, key.toString());
      this.failures = 0;
      this.log(`acme: got a certificate for ${hostname}, expires ${this.held!.notAfter.toISOString()}; stored in ${this.certPath}`);
      this.scheduleRenewal();
      return true;
    } catch (e) {
      this.failures++;
      const delay = retryDelay(this.failures);
      this.log(
        `acme: no certificate for ${hostname} from ${directoryUrl}: ${describe(e)}; trying again in ${delay / 1000} s` +
          (this.held ? " (serving the current one meanwhile)" : " or when a TLS client asks for the name"),
      );
      this.arm(delay, "retry after a failed order");
      return false;
    }
  }

  private scheduleRenewal(): void {
    if (!this.held) return;
    this.arm(renewalTime(this.held.notBefore, this.held.notAfter).getTime() - this.now(), "renewal due");
  }

  /** Orders after `ms`, re-arming in steps past setTimeout's limit. */
  private arm(ms: number, why: string): void {
    clearTimeout(this.timer);
    if (this.closed) return;
    const at = Date.now() + ms;
    const step = () => {
      const left = at - Date.now();
      if (left > 0) this.timer = setTimeout(step, Math.min(left, MAX_TIMER_MS)).unref();
      else void this.order(why);
    };
    step();
  }

  private async accountKey(): Promise<Buffer> {
    const path = join(this.config.cacheDir, "account.key");
    if (existsSync(path)) return readFileSync(path);
    const key = await acme.crypto.createPrivateEcdsaKey();
    writePrivate(path, key);
    return key;
  }

  private store(certPem: string, keyPem: string): void {
    writePrivate(this.keyPath, keyPem);
    writePrivate(this.certPath, certPem);
  }
}

/**
 * acme-client's transport, except that a CA it cannot reach at all (no DNS answer, refused,
 * untrusted certificate) fails this order at once with what went wrong: its own retries would
 * take 75 s and then end in a TypeError. So does a CA's rate limit (429): it is no passing
 * failure, and acme-client would ask five more times, 5 to 25 s apart (Retry-After's time
 * apart when there is one, with Let's Encrypt hours). Our orders retry with backoff instead.
 * (An error without `config` passes acme-client's retry interceptor untouched.)
 */
const httpAdapter = axios.getAdapter("http");
const failFastTransport: AxiosAdapter = async (config) => {
  try {
    return await httpAdapter(config);
  } catch (e) {
    const err = e as Error & { code?: string; response?: { status?: number }; config?: unknown };
    if (err.response?.status === 429) err.config = undefined;
    if (err.response) throw e;
    throw new Error(`cannot reach ${config.url}: ${err.message}${err.code && !err.message.includes(err.code) ? ` (${err.code})` : ""}`);
  }
};

/** Atomically, mode 0600 from the start. */
function writePrivate(path: string, data: string | Buffer): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, data, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

/** The CA's problem detail when it gave one, else the error's message. */
function describe(e: unknown): string {
  const err = e as Error & { response?: { data?: { detail?: string } } };
  return err.response?.data?.detail ?? err.message;
}
