import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";

/**
 * The control server's durable state: one small JSON file per record (users/, keys/, nodes/,
 * plus meta.json for the ID counters) in the state directory, each replaced atomically (write
 * a temporary file, fsync, rename) when that record changes, so a registration writes one
 * node file however large the tailnet is.
 *
 * Why not SQLite, as Headscale uses: the server must run on the Node.js of a stock Debian
 * bookworm container (18.x, no built-in SQLite; node:sqlite arrived in 22.5), and a native
 * SQLite binding needs a compiler or a prebuilt download, neither of which CI or an offline
 * lab has. The data is a handful of small records per node, changes only on registration and
 * admin actions (not on every map poll), and has one writer; per-record atomic files give the
 * same crash safety for that shape (a record is either its old or its new version).
 */

export interface UserRec {
  id: number;
  name: string;
  createdAt: string;
}

export interface PreAuthKeyRec {
  id: number;
  userId: number;
  /** SHA-256 of the key: the key itself is shown once, when created, and never stored. */
  hash: string;
  /** The first characters of the key, to tell keys apart in listings. */
  prefix: string;
  reusable: boolean;
  ephemeral: boolean;
  used: boolean;
  expiration: string;
  createdAt: string;
}

export interface NodeRec {
  id: number;
  stableId: string;
  userId: number;
  machineKey: string;
  nodeKey: string;
  discoKey?: string;
  ipv4: string;
  ipv6: string;
  /** The MagicDNS label: the sanitised hostname, made unique. */
  givenName: string;
  hostinfo: Record<string, unknown>;
  endpoints: string[];
  approvedRoutes: string[];
  createdAt: string;
  lastSeen?: string;
  /** Key expiry; a past value means the node must log in again (logout, `nodes expire`). */
  expiry?: string;
  ephemeral: boolean;
  registerMethod: "authkey" | "cli";
  preAuthKeyId?: number;
  cap: number;
}

export interface State {
  version: 1;
  nextUserId: number;
  nextNodeId: number;
  nextKeyId: number;
  users: UserRec[];
  preAuthKeys: PreAuthKeyRec[];
  nodes: NodeRec[];
}

const emptyState = (): State => ({ version: 1, nextUserId: 1, nextNodeId: 1, nextKeyId: 1, users: [], preAuthKeys: [], nodes: [] });

/** Write a file so that readers see either the old or the new content, never a torn one. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w", mode);
  try {
    writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

type Collection = "users" | "keys" | "nodes";
const COLLECTIONS: Record<Collection, "users" | "preAuthKeys" | "nodes"> = { users: "users", keys: "preAuthKeys", nodes: "nodes" };

/** A dirty-record name: "meta", or "<collection>:<id>". */
export type RecordRef = "meta" | `${Collection}:${number}`;

export class StateStore {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const c of Object.keys(COLLECTIONS)) mkdirSync(join(dir, c), { recursive: true, mode: 0o700 });
  }

  load(): State {
    const state = emptyState();
    const meta = join(this.dir, "meta.json");
    if (existsSync(meta)) {
      const m = JSON.parse(readFileSync(meta, "utf8")) as Pick<State, "version" | "nextUserId" | "nextNodeId" | "nextKeyId">;
      if (m.version !== 1) throw new Error(`${meta}: unknown state version ${m.version}`);
      Object.assign(state, m);
    }
    for (const [c, field] of Object.entries(COLLECTIONS)) {
      const dir = join(this.dir, c);
      const recs = readdirSync(dir)
        .filter((f) => /^\d+\.json$/.test(f))
        .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")) as { id: number })
        .sort((a, b) => a.id - b.id);
      (state[field] as { id: number }[]) = recs;
    }
    return state;
  }

  /** Write the named records (deleting those no longer in the state). */
  save(state: State, dirty: Iterable<RecordRef>): void {
    for (const ref of dirty) {
      if (ref === "meta") {
        const { version, nextUserId, nextNodeId, nextKeyId } = state;
        writeFileAtomic(join(this.dir, "meta.json"), `${JSON.stringify({ version, nextUserId, nextNodeId, nextKeyId })}\n`);
        continue;
      }
      const [c, id] = ref.split(":") as [Collection, string];
      const file = join(this.dir, c, `${id}.json`);
      const rec = (state[COLLECTIONS[c]] as { id: number }[]).find((r) => r.id === Number(id));
      if (rec) writeFileAtomic(file, `${JSON.stringify(rec)}\n`);
      else rmSync(file, { force: true });
    }
  }
}
