import {
  closeSync,
  existsSync,
  promises as fsp,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import type { Hostinfo } from "./validate.ts";

/**
 * The control server's durable state: one small JSON file per record (users/, keys/, nodes/,
 * plus meta.json for the ID counters) in the state directory, each replaced atomically (write
 * a temporary file, fsync, rename) when that record changes, so a registration writes one
 * node file however large the tailnet is. A commit of several records goes through a journal
 * (see StateStore), and is written with asynchronous I/O, so map streams keep flowing while
 * the disk syncs.
 *
 * Why not SQLite, as Headscale uses: the server must run on the Node.js of a stock Debian
 * bookworm container (18.x, no built-in SQLite; node:sqlite arrived in 22.5), and a native
 * SQLite binding needs a compiler or a prebuilt download, neither of which CI or an offline
 * lab has. The data is a handful of small records per node, changes only on registration and
 * admin actions (not on every map poll), and has one writer; per-record atomic files plus a
 * journal give the same crash safety for that shape (a commit is wholly old or wholly new).
 */

export interface UserRec {
  id: number;
  name: string;
  createdAt: string;
  /** Users made by an OIDC login: what the provider vouched for, and who it is there (issuer/subject). */
  email?: string;
  displayName?: string;
  provider?: "oidc";
  providerId?: string;
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
  /** Nodes registered with this key are tagged with these (and owned by the tags, not the user). */
  tags?: string[];
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
  /** Decoded by validate.ts: only fields we parsed, never the client's text. */
  hostinfo: Hostinfo;
  endpoints: string[];
  approvedRoutes: string[];
  createdAt: string;
  lastSeen?: string;
  /** Key expiry; a past value means the node must log in again (logout, `nodes expire`). */
  expiry?: string;
  ephemeral: boolean;
  registerMethod: "authkey" | "cli" | "oidc";
  preAuthKeyId?: number;
  cap: number;
  /** ACL tags (from a tagged pre-auth key, or `--advertise-tags` approved by tagOwners): a tagged node is its tags', not its user's. */
  tags?: string[];
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

/** fsync a directory, so the renames and unlinks in it survive a power loss. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

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
  fsyncDir(dirname(path));
}

async function writeFileAtomicAsync(path: string, data: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await fsp.open(tmp, "w", 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, path);
}

async function fsyncDirAsync(dir: string): Promise<void> {
  const fh = await fsp.open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

type Collection = "users" | "keys" | "nodes";
const COLLECTIONS: Record<Collection, "users" | "preAuthKeys" | "nodes"> = { users: "users", keys: "preAuthKeys", nodes: "nodes" };

/** A dirty-record name: "meta", or "<collection>:<id>". */
export type RecordRef = "meta" | `${Collection}:${number}`;

type Meta = Pick<State, "version" | "nextUserId" | "nextNodeId" | "nextKeyId">;

/**
 * One commit, serialised when it is taken (the state may change while it is written): every
 * dirty record's new JSON text, or null for a deleted one, and the counters.
 */
export interface Commit {
  records: Record<string, string | null>;
  meta: string;
}

const JOURNAL = "journal.json";

/**
 * A crash at any point of a commit loses at most that commit, never part of it: the whole
 * commit is first written to journal.json (temporary file, fsync, rename, directory fsync:
 * the commit point), then applied record by record, then the journal is removed. Loading
 * replays a journal left behind (applying is idempotent) and ignores a journal that was never
 * renamed into place. Counters are also reconciled with the highest ID on disk, so even a
 * lost or stale meta.json never hands out an ID twice.
 *
 * WG3_CONTROL_CRASH_AT_STEP=N (tests only) makes the process SIGKILL itself at the N-th step
 * of its commits, to prove the above at every step.
 */
export class StateStore {
  private steps = 0;
  private readonly crashAt = Number(process.env.WG3_CONTROL_CRASH_AT_STEP) || 0;

  constructor(
    readonly dir: string,
    private readonly log: (msg: string) => void = () => {},
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const c of Object.keys(COLLECTIONS)) mkdirSync(join(dir, c), { recursive: true, mode: 0o700 });
  }

  private step(): void {
    if (++this.steps === this.crashAt) process.kill(process.pid, "SIGKILL");
  }

  load(): State {
    this.recover();
    const state = emptyState();
    const meta = join(this.dir, "meta.json");
    if (existsSync(meta)) {
      const m = JSON.parse(readFileSync(meta, "utf8")) as Meta;
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
    this.reconcile(state);
    return state;
  }

  /** Counters above every ID on disk, whatever meta.json says. */
  private reconcile(state: State): void {
    const fix = (counter: "nextUserId" | "nextNodeId" | "nextKeyId", recs: { id: number }[]) => {
      const next = Math.max(0, ...recs.map((r) => r.id)) + 1;
      if (state[counter] < next) {
        this.log(`state: ${counter} was ${state[counter]} below an ID on disk; now ${next}`);
        state[counter] = next;
      }
    };
    fix("nextUserId", state.users);
    fix("nextNodeId", state.nodes);
    fix("nextKeyId", state.preAuthKeys);
  }

  /** Finish a commit whose journal made it to disk; drop one that did not. */
  private recover(): void {
    for (const f of readdirSync(this.dir)) if (f.startsWith(`${JOURNAL}.tmp-`)) rmSync(join(this.dir, f), { force: true });
    const path = join(this.dir, JOURNAL);
    if (!existsSync(path)) return;
    const commit = JSON.parse(readFileSync(path, "utf8")) as Commit;
    for (const [ref, text] of Object.entries(commit.records)) {
      const file = this.file(ref as RecordRef);
      if (text === null) rmSync(file, { force: true });
      else writeFileAtomic(file, text);
    }
    writeFileAtomic(join(this.dir, "meta.json"), commit.meta);
    rmSync(path);
    fsyncDir(this.dir);
    this.log(`state: finished an interrupted commit of ${Object.keys(commit.records).length} record(s) from ${JOURNAL}`);
  }

  private file(ref: RecordRef): string {
    const [c, id] = ref.split(":") as [Collection, string];
    return join(this.dir, c, `${id}.json`);
  }

  /** Serialise the named records now (deleted ones as null), plus the counters. */
  prepare(state: State, dirty: Iterable<RecordRef>): Commit {
    const records: Record<string, string | null> = {};
    for (const ref of dirty) {
      if (ref === "meta") continue;
      const [c, id] = ref.split(":") as [Collection, string];
      const rec = (state[COLLECTIONS[c]] as { id: number }[]).find((r) => r.id === Number(id));
      records[ref] = rec ? `${JSON.stringify(rec)}\n` : null;
    }
    const { version, nextUserId, nextNodeId, nextKeyId } = state;
    return { records, meta: `${JSON.stringify({ version, nextUserId, nextNodeId, nextKeyId })}\n` };
  }

  /** Write one commit: journal (the commit point), records, counters, then drop the journal. */
  async commit(c: Commit): Promise<void> {
    const journal = join(this.dir, JOURNAL);
    const tmp = `${journal}.tmp-${process.pid}`;
    const fh = await fsp.open(tmp, "w", 0o600);
    try {
      await fh.writeFile(JSON.stringify(c));
      await fh.sync();
    } finally {
      await fh.close();
    }
    this.step();
    await fsp.rename(tmp, journal);
    this.step();
    await fsyncDirAsync(this.dir);
    this.step();
    const dirs = new Set<string>();
    for (const [ref, text] of Object.entries(c.records)) {
      const file = this.file(ref as RecordRef);
      if (text === null) await fsp.rm(file, { force: true });
      else await writeFileAtomicAsync(file, text);
      dirs.add(dirname(file));
      this.step();
    }
    await writeFileAtomicAsync(join(this.dir, "meta.json"), c.meta);
    this.step();
    for (const d of dirs) await fsyncDirAsync(d);
    this.step();
    await fsp.rm(journal);
    this.step();
  }

  /** The same, synchronously (tests, and shutdown). */
  save(state: State, dirty: Iterable<RecordRef>): void {
    const c = this.prepare(state, dirty);
    writeFileAtomic(join(this.dir, JOURNAL), JSON.stringify(c));
    this.recover();
  }
}
