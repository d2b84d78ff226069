import { createCipheriv, createDecipheriv, createHash, createHmac, createSecretKey, type KeyObject } from "node:crypto";
import { Duplex } from "node:stream";
import { dh, type KeyPair, nativeX25519, newKeyPair } from "./keys.ts";

/**
 * Tailscale's control-protocol Noise: pattern IK over X25519, ChaCha20-Poly1305, BLAKE2s
 * (tailscale control/controlbase). Two departures from stock Noise matter: the prologue
 * carries the protocol version, and transport nonces are big-endian.
 */

export const PROTOCOL_NAME = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE = "Tailscale Control Protocol v";

export const MSG_INITIATION = 1;
export const MSG_RESPONSE = 2;
export const MSG_ERROR = 3;
export const MSG_RECORD = 4;

export const INITIATION_LEN = 101;
export const RESPONSE_LEN = 51;
/** A whole transport frame (3-byte header + ciphertext) is at most this long. */
export const MAX_FRAME = 4096;
export const MAX_PLAINTEXT = MAX_FRAME - 3 - 16;

const blake2s = (...parts: Uint8Array[]): Buffer => {
  const h = createHash("blake2s256");
  for (const p of parts) h.update(p);
  return h.digest();
};
const hmac = (key: Uint8Array, ...parts: Uint8Array[]): Buffer => {
  const m = createHmac("blake2s256", key);
  for (const p of parts) m.update(p);
  return m.digest();
};

/** Noise's HKDF with two outputs (HMAC-BLAKE2s). */
function hkdf2(chainingKey: Uint8Array, ikm: Uint8Array): [Buffer, Buffer] {
  const temp = hmac(chainingKey, ikm);
  const out1 = hmac(temp, Uint8Array.of(1));
  const out2 = hmac(temp, out1, Uint8Array.of(2));
  return [out1, out2];
}

function nonceBE(counter: bigint): Buffer {
  const n = Buffer.alloc(12);
  n.writeBigUInt64BE(counter, 4);
  return n;
}

export function seal(key: Uint8Array, nonce: Buffer, plaintext: Uint8Array, aad?: Uint8Array): Buffer {
  const c = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
  if (aad) c.setAAD(aad, { plaintextLength: plaintext.length });
  const body = Buffer.concat([c.update(plaintext), c.final()]);
  return Buffer.concat([body, c.getAuthTag()]);
}

export function open(key: Uint8Array, nonce: Buffer, ciphertext: Uint8Array, aad?: Uint8Array): Buffer {
  if (ciphertext.length < 16) throw new Error("ciphertext shorter than its tag");
  const d = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
  const body = ciphertext.subarray(0, ciphertext.length - 16);
  if (aad) d.setAAD(aad, { plaintextLength: body.length });
  d.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
  try {
    return Buffer.concat([d.update(body), d.final()]);
  } catch {
    throw new Error("message authentication failed");
  }
}

/** The symmetric state shared by both sides of the handshake. */
class Symmetric {
  h: Buffer;
  ck: Buffer;
  k: Buffer | undefined;

  constructor(version: number) {
    // The protocol name is 33 bytes, longer than a hash, so h = HASH(name).
    this.h = blake2s(Buffer.from(PROTOCOL_NAME));
    this.ck = this.h;
    this.mixHash(Buffer.from(`${PROLOGUE}${version}`));
  }
  mixHash(data: Uint8Array): void {
    this.h = blake2s(this.h, data);
  }
  mixKey(ikm: Uint8Array): void {
    [this.ck, this.k] = hkdf2(this.ck, ikm);
  }
  /** Each handshake key is used exactly once, so the nonce is always zero. */
  encryptAndHash(plaintext: Uint8Array): Buffer {
    const ct = seal(this.k!, Buffer.alloc(12), plaintext, this.h);
    this.mixHash(ct);
    return ct;
  }
  decryptAndHash(ciphertext: Uint8Array): Buffer {
    const pt = open(this.k!, Buffer.alloc(12), ciphertext, this.h);
    this.mixHash(ciphertext);
    return pt;
  }
  split(): [Buffer, Buffer] {
    return hkdf2(this.ck, new Uint8Array(0));
  }
}

export interface HandshakeResult {
  /** The client's machine public key: its stable identity for every request on this connection. */
  machineKey: Uint8Array;
  version: number;
  /** Key for records the client sends. */
  rxKey: Buffer;
  /** Key for records the server sends. */
  txKey: Buffer;
  handshakeHash: Buffer;
}

/** A handshake failure to report to the peer as an error frame before closing. */
export class HandshakeError extends Error {}

export function errorFrame(message: string): Buffer {
  const text = Buffer.from(message.slice(0, 512), "ascii");
  const b = Buffer.alloc(3 + text.length);
  b[0] = MSG_ERROR;
  b.writeUInt16BE(text.length, 1);
  text.copy(b, 3);
  return b;
}

/** Server side: consume the 101-byte initiation, produce the 51-byte response. */
export function respond(
  serverStatic: KeyPair,
  initiation: Uint8Array,
  ephemeral: KeyPair = newKeyPair(),
): { response: Buffer; result: HandshakeResult } {
  const msg = Buffer.from(initiation);
  if (msg.length !== INITIATION_LEN) throw new HandshakeError(`initiation is ${msg.length} bytes, want ${INITIATION_LEN}`);
  if (msg[2] !== MSG_INITIATION) throw new HandshakeError(`unexpected message type ${msg[2]} in initiation`);
  if (msg.readUInt16BE(3) !== INITIATION_LEN - 5) throw new HandshakeError("bad length field in initiation");
  const version = msg.readUInt16BE(0);

  const s = new Symmetric(version);
  s.mixHash(serverStatic.publicKey);
  const ei = msg.subarray(5, 37);
  s.mixHash(ei);
  let machineKey: Uint8Array;
  try {
    s.mixKey(dh(serverStatic.privateKey, ei));
    machineKey = s.decryptAndHash(msg.subarray(37, 85));
    s.mixKey(dh(serverStatic.privateKey, machineKey));
    s.decryptAndHash(msg.subarray(85, 101));
  } catch (e) {
    throw new HandshakeError(`handshake failed: ${(e as Error).message}`);
  }

  s.mixHash(ephemeral.publicKey);
  s.mixKey(dh(ephemeral.privateKey, ei));
  s.mixKey(dh(ephemeral.privateKey, machineKey));
  const tag = s.encryptAndHash(new Uint8Array(0));
  const response = Buffer.alloc(RESPONSE_LEN);
  response[0] = MSG_RESPONSE;
  response.writeUInt16BE(RESPONSE_LEN - 3, 1);
  Buffer.from(ephemeral.publicKey).copy(response, 3);
  tag.copy(response, 35);
  const [c2s, s2c] = s.split();
  return { response, result: { machineKey: Uint8Array.from(machineKey), version, rxKey: c2s, txKey: s2c, handshakeHash: s.h } };
}

/**
 * Client side, for tests and the load generator: build the initiation, then finish on the
 * response. X25519 through node:crypto (the server's respond() keeps noble's).
 */
export function initiate(
  machine: KeyPair,
  serverPublic: Uint8Array,
  version: number,
  ephemeral: KeyPair = nativeX25519.newKeyPair(),
): { initiation: Buffer; finish(response: Uint8Array): { txKey: Buffer; rxKey: Buffer; handshakeHash: Buffer } } {
  const s = new Symmetric(version);
  s.mixHash(serverPublic);
  s.mixHash(ephemeral.publicKey);
  s.mixKey(nativeX25519.dh(ephemeral, serverPublic));
  const encMachine = s.encryptAndHash(machine.publicKey);
  s.mixKey(nativeX25519.dh(machine, serverPublic));
  const tag = s.encryptAndHash(new Uint8Array(0));
  const initiation = Buffer.alloc(INITIATION_LEN);
  initiation.writeUInt16BE(version, 0);
  initiation[2] = MSG_INITIATION;
  initiation.writeUInt16BE(INITIATION_LEN - 5, 3);
  Buffer.from(ephemeral.publicKey).copy(initiation, 5);
  encMachine.copy(initiation, 37);
  tag.copy(initiation, 85);
  return {
    initiation,
    finish(response) {
      const r = Buffer.from(response);
      if (r[0] === MSG_ERROR) throw new HandshakeError(`server refused the handshake: ${r.subarray(3, 3 + r.readUInt16BE(1)).toString()}`);
      if (r.length !== RESPONSE_LEN || r[0] !== MSG_RESPONSE || r.readUInt16BE(1) !== RESPONSE_LEN - 3)
        throw new HandshakeError("malformed handshake response");
      const er = r.subarray(3, 35);
      s.mixHash(er);
      s.mixKey(nativeX25519.dh(ephemeral, er));
      s.mixKey(nativeX25519.dh(machine, er));
      s.decryptAndHash(r.subarray(35, 51));
      const [c2s, s2c] = s.split();
      return { txKey: c2s, rxKey: s2c, handshakeHash: s.h };
    },
  };
}

/** Encrypt one transport record (caller keeps plaintext <= MAX_PLAINTEXT). */
export function encodeRecord(key: Uint8Array, counter: bigint, plaintext: Uint8Array): Buffer {
  const ct = seal(key, nonceBE(counter), plaintext);
  const head = Buffer.alloc(3);
  head[0] = MSG_RECORD;
  head.writeUInt16BE(ct.length, 1);
  return Buffer.concat([head, ct]);
}

/**
 * Opens one direction's transport records in order, for the client's receive path: one key
 * object and one nonce buffer for all of them (setting up a cipher from a raw key per record
 * cost more than decrypting its 4 KB). Same result as open() with nonceBE(counter).
 */
export class RecordOpener {
  private readonly key: KeyObject;
  private readonly nonce = Buffer.alloc(12);
  private counter = 0;

  constructor(key: Uint8Array) {
    this.key = createSecretKey(key);
  }

  open(ciphertext: Buffer): Buffer {
    if (ciphertext.length < 16) throw new Error("ciphertext shorter than its tag");
    // The 64-bit big-endian counter in bytes 4..11 (a stream never gets near 2^53 records).
    this.nonce.writeUInt32BE(Math.floor(this.counter / 2 ** 32), 4);
    this.nonce.writeUInt32BE(this.counter % 2 ** 32, 8);
    this.counter++;
    const d = createDecipheriv("chacha20-poly1305", this.key, this.nonce, { authTagLength: 16 });
    d.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
    const pt = d.update(ciphertext.subarray(0, ciphertext.length - 16));
    try {
      d.final();
    } catch {
      throw new Error("message authentication failed");
    }
    return pt;
  }
}

const EARLY_MAGIC = Buffer.from([0xff, 0xff, 0xff, 0x54, 0x53]);

/**
 * The client's view of the server's optional early payload (Headscale sends one, a node-key
 * challenge, before HTTP/2): the first 9 decrypted bytes are either that magic and a u32
 * big-endian length, whose JSON is skipped, or already the start of HTTP/2.
 */
class EarlyPayloadSkipper {
  private head: Buffer | undefined = Buffer.alloc(0);
  private skip = 0;

  /** The part of `d` that is HTTP/2 (possibly empty). */
  take(d: Buffer): Buffer {
    if (this.head) {
      this.head = Buffer.concat([this.head, d]);
      if (this.head.length < 9) return Buffer.alloc(0);
      d = this.head;
      this.head = undefined;
      if (d.subarray(0, 5).equals(EARLY_MAGIC)) {
        this.skip = d.readUInt32BE(5);
        d = d.subarray(9);
      }
    }
    if (this.skip) {
      const n = Math.min(this.skip, d.length);
      this.skip -= n;
      d = d.subarray(n);
    }
    return d;
  }
}

/**
 * The encrypted transport as a byte stream: writes are split into records of at most
 * MAX_FRAME bytes; reads reassemble and decrypt records. Any malformed or unauthentic
 * record destroys the stream (and the socket under it).
 *
 * `client: true` is the client's receive path, made cheap for the load generator, which
 * receives every netmap of hundreds of nodes: the server's early payload is skipped, and all
 * records that one socket read completes are pushed on as one chunk, not one push (through
 * HTTP/2 and its stream machinery) per 4 KB record. The server's path is the plain one.
 */
export class NoiseConn extends Duplex {
  private txCounter = 0n;
  private rxCounter = 0n;
  private pending: Buffer = Buffer.alloc(0);
  private readonly opener: RecordOpener | undefined;
  private readonly early: EarlyPayloadSkipper | undefined;

  constructor(
    readonly socket: Duplex,
    private readonly keys: { txKey: Uint8Array; rxKey: Uint8Array },
    readonly peer: { machineKey?: Uint8Array; version?: number } = {},
    initial?: Buffer,
    o: { client?: boolean } = {},
  ) {
    super({ allowHalfOpen: false });
    if (o.client) {
      this.opener = new RecordOpener(keys.rxKey);
      this.early = new EarlyPayloadSkipper();
    }
    socket.on("data", (d: Buffer) => this.onData(d));
    socket.on("end", () => this.push(null));
    socket.on("error", (e) => this.destroy(e));
    socket.on("close", () => this.destroy());
    if (initial?.length) this.onData(initial);
  }

  private onData(d: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, d]) : d;
    try {
      if (this.opener) this.receiveBatched(this.opener);
      else this.receiveEach();
    } catch (e) {
      this.destroy(e as Error);
    }
  }

  /** The length of the complete record at the head of `pending`, or -1 if it is not all here yet. */
  private nextRecord(): number {
    if (this.pending.length < 3) return -1;
    if (this.pending[0] !== MSG_RECORD) throw new Error(`unexpected record type ${this.pending[0]}`);
    const len = this.pending.readUInt16BE(1);
    if (3 + len > MAX_FRAME) throw new Error(`record of ${3 + len} bytes exceeds ${MAX_FRAME}`);
    return this.pending.length < 3 + len ? -1 : len;
  }

  private receiveEach(): void {
    for (let len = this.nextRecord(); len >= 0; len = this.nextRecord()) {
      const ct = this.pending.subarray(3, 3 + len);
      this.pending = this.pending.subarray(3 + len);
      const pt = open(this.keys.rxKey, nonceBE(this.rxCounter++), ct);
      if (pt.length) this.push(pt);
    }
  }

  private receiveBatched(opener: RecordOpener): void {
    const plain: Buffer[] = [];
    let bytes = 0;
    for (let len = this.nextRecord(); len >= 0; len = this.nextRecord()) {
      const pt = opener.open(this.pending.subarray(3, 3 + len));
      this.pending = this.pending.subarray(3 + len);
      plain.push(pt);
      bytes += pt.length;
    }
    if (!bytes) return;
    const out = this.early!.take(plain.length === 1 ? plain[0]! : Buffer.concat(plain, bytes));
    if (out.length) this.push(out);
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    const frames: Buffer[] = [];
    for (let off = 0; off < chunk.length; off += MAX_PLAINTEXT) {
      frames.push(encodeRecord(this.keys.txKey, this.txCounter++, chunk.subarray(off, off + MAX_PLAINTEXT)));
    }
    this.socket.write(Buffer.concat(frames), cb);
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }

  // http2 reads these off the socket it is given.
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  setTimeout(): this {
    return this;
  }
  get remoteAddress(): string | undefined {
    return (this.socket as { remoteAddress?: string }).remoteAddress;
  }
}
