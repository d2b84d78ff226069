import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";

/**
 * The control server's durable state, kept as one JSON document in the state directory and
 * replaced atomically (write a temporary file, fsync, rename) on every change.
 *
 * Why not SQLite, as Headscale uses: the server must run on the Node.js of a stock Debian
 * bookworm container (18.x, no built-in SQLite; node:sqlite arrived in 22.5), and a native
 * SQLite binding needs a compiler or a prebuilt download, neither of which CI or an offline
 * lab has. The state is small (a lab holds a handful of nodes; 5000 nodes are ~5 MB), changes
 * only on registration and admin actions (not on every map poll), and has one writer. A
 * whole-file atomic rename gives the same crash safety for this shape of data.
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

export class StateStore {
  readonly file: string;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.file = join(dir, "state.json");
  }

  load(): State {
    if (!existsSync(this.file)) return emptyState();
    const s = JSON.parse(readFileSync(this.file, "utf8")) as State;
    if (s.version !== 1) throw new Error(`${this.file}: unknown state version ${s.version}`);
    return s;
  }

  save(state: State): void {
    writeFileAtomic(this.file, `${JSON.stringify(state, null, 1)}\n`);
  }
}
