import type { Hostinfo } from "./validate.ts";

/** An interactive login waiting for an admin's `nodes register`. */
export interface PendingLogin {
  id: string;
  machineKey: string;
  nodeKey: string;
  hostinfo: Hostinfo;
  cap: number;
  /** A key expiry the client asked for. */
  expiry?: Date;
  waiters: ((userId: number | undefined) => void)[];
  created: number;
}

/**
 * Pending interactive logins, bounded: anyone who completes a Noise handshake (no credential
 * needed) can start one, so there are at most `max`, each for at most `ttl` ms; beyond the cap
 * the least recently used goes (as Headscale's registration cache), and one machine key holds
 * at most one. A dropped login's waiting follow-up request is answered (with undefined).
 */
export class PendingLogins {
  private readonly byId = new Map<string, PendingLogin>();

  constructor(
    private readonly max: number,
    private readonly ttl: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.byId.size;
  }

  /** A live login by ID; using it makes it the most recently used. */
  get(id: string): PendingLogin | undefined {
    this.expire();
    const p = this.byId.get(id);
    if (p) {
      this.byId.delete(id);
      this.byId.set(id, p);
    }
    return p;
  }

  add(p: PendingLogin): void {
    this.expire();
    for (const [id, q] of this.byId) if (q.machineKey === p.machineKey) this.drop(id);
    this.byId.set(p.id, p);
    while (this.byId.size > this.max) this.drop(this.byId.keys().next().value as string);
  }

  /** Remove a login (approved, or dropped); its waiters get `userId`. */
  drop(id: string, userId?: number): void {
    const p = this.byId.get(id);
    if (!p) return;
    this.byId.delete(id);
    for (const w of p.waiters) w(userId);
  }

  private expire(): void {
    const cutoff = this.now() - this.ttl;
    for (const [id, p] of this.byId) if (p.created <= cutoff) this.drop(id);
  }
}
