/**
 * ChaCha20-Poly1305 decryption (RFC 8439, no associated data) in plain JS, for short records
 * only. Setting up a node:crypto cipher costs about 7 us whatever the length; a map stream from
 * the builtin or null server is mostly 9-byte HTTP/2 frame headers, each its own Noise record,
 * which this opens in a fraction of that. Longer records stay with node:crypto (faster per byte).
 * Written from the RFC; checked against node:crypto in tests/unit/control-client-path.test.ts.
 */

const SIGMA0 = 0x61707865;
const SIGMA1 = 0x3320646e;
const SIGMA2 = 0x79622d32;
const SIGMA3 = 0x6b206574;

const rotl = (v: number, c: number) => (v << c) | (v >>> (32 - c));

/**
 * One ChaCha20 block (RFC 8439 2.3) for key words `k`, `counter` and nonce words `n`, into
 * `out`. The state in locals, not an array: this runs twice per record.
 */
function chachaBlock(k: Int32Array, counter: number, n: Int32Array, out: Int32Array): void {
  const [k0, k1, k2, k3, k4, k5, k6, k7] = k as unknown as number[];
  const [n0, n1, n2] = n as unknown as number[];
  let x0 = SIGMA0,
    x1 = SIGMA1,
    x2 = SIGMA2,
    x3 = SIGMA3;
  let x4 = k0!,
    x5 = k1!,
    x6 = k2!,
    x7 = k3!,
    x8 = k4!,
    x9 = k5!,
    x10 = k6!,
    x11 = k7!;
  let x12 = counter,
    x13 = n0!,
    x14 = n1!,
    x15 = n2!;
  for (let i = 0; i < 10; i++) {
    // Column rounds: quarter rounds on (0,4,8,12) (1,5,9,13) (2,6,10,14) (3,7,11,15).
    x0 = (x0 + x4) | 0;
    x12 = rotl(x12 ^ x0, 16);
    x8 = (x8 + x12) | 0;
    x4 = rotl(x4 ^ x8, 12);
    x0 = (x0 + x4) | 0;
    x12 = rotl(x12 ^ x0, 8);
    x8 = (x8 + x12) | 0;
    x4 = rotl(x4 ^ x8, 7);
    x1 = (x1 + x5) | 0;
    x13 = rotl(x13 ^ x1, 16);
    x9 = (x9 + x13) | 0;
    x5 = rotl(x5 ^ x9, 12);
    x1 = (x1 + x5) | 0;
    x13 = rotl(x13 ^ x1, 8);
    x9 = (x9 + x13) | 0;
    x5 = rotl(x5 ^ x9, 7);
    x2 = (x2 + x6) | 0;
    x14 = rotl(x14 ^ x2, 16);
    x10 = (x10 + x14) | 0;
    x6 = rotl(x6 ^ x10, 12);
    x2 = (x2 + x6) | 0;
    x14 = rotl(x14 ^ x2, 8);
    x10 = (x10 + x14) | 0;
    x6 = rotl(x6 ^ x10, 7);
    x3 = (x3 + x7) | 0;
    x15 = rotl(x15 ^ x3, 16);
    x11 = (x11 + x15) | 0;
    x7 = rotl(x7 ^ x11, 12);
    x3 = (x3 + x7) | 0;
    x15 = rotl(x15 ^ x3, 8);
    x11 = (x11 + x15) | 0;
    x7 = rotl(x7 ^ x11, 7);
    // Diagonal rounds: (0,5,10,15) (1,6,11,12) (2,7,8,13) (3,4,9,14).
    x0 = (x0 + x5) | 0;
    x15 = rotl(x15 ^ x0, 16);
    x10 = (x10 + x15) | 0;
    x5 = rotl(x5 ^ x10, 12);
    x0 = (x0 + x5) | 0;
    x15 = rotl(x15 ^ x0, 8);
    x10 = (x10 + x15) | 0;
    x5 = rotl(x5 ^ x10, 7);
    x1 = (x1 + x6) | 0;
    x12 = rotl(x12 ^ x1, 16);
    x11 = (x11 + x12) | 0;
    x6 = rotl(x6 ^ x11, 12);
    x1 = (x1 + x6) | 0;
    x12 = rotl(x12 ^ x1, 8);
    x11 = (x11 + x12) | 0;
    x6 = rotl(x6 ^ x11, 7);
    x2 = (x2 + x7) | 0;
    x13 = rotl(x13 ^ x2, 16);
    x8 = (x8 + x13) | 0;
    x7 = rotl(x7 ^ x8, 12);
    x2 = (x2 + x7) | 0;
    x13 = rotl(x13 ^ x2, 8);
    x8 = (x8 + x13) | 0;
    x7 = rotl(x7 ^ x8, 7);
    x3 = (x3 + x4) | 0;
    x14 = rotl(x14 ^ x3, 16);
    x9 = (x9 + x14) | 0;
    x4 = rotl(x4 ^ x9, 12);
    x3 = (x3 + x4) | 0;
    x14 = rotl(x14 ^ x3, 8);
    x9 = (x9 + x14) | 0;
    x4 = rotl(x4 ^ x9, 7);
  }
  out[0] = x0 + SIGMA0;
  out[1] = x1 + SIGMA1;
  out[2] = x2 + SIGMA2;
  out[3] = x3 + SIGMA3;
  out[4] = x4 + k0!;
  out[5] = x5 + k1!;
  out[6] = x6 + k2!;
  out[7] = x7 + k3!;
  out[8] = x8 + k4!;
  out[9] = x9 + k5!;
  out[10] = x10 + k6!;
  out[11] = x11 + k7!;
  out[12] = x12 + counter;
  out[13] = x13 + n0!;
  out[14] = x14 + n1!;
  out[15] = x15 + n2!;
}

/*
 * Poly1305 (RFC 8439 2.5) in ten 13-bit limbs (130 bits): a limb product is under 2^27, a sum
 * of ten (with the 5 of 2^130 = 5 mod p) under 2^34, exact in a double.
 */
const LIMB = 8192;
const INV_LIMB = 1 / LIMB;

/** Four little-endian 32-bit words (w, unsigned or not) as 13-bit limbs into `out`, plus `hibit` at bit 128. */
function limbs(w0: number, w1: number, w2: number, w3: number, hibit: number, out: Float64Array): void {
  out[0] = w0 & 0x1fff;
  out[1] = (w0 >>> 13) & 0x1fff;
  out[2] = ((w0 >>> 26) | (w1 << 6)) & 0x1fff;
  out[3] = (w1 >>> 7) & 0x1fff;
  out[4] = ((w1 >>> 20) | (w2 << 12)) & 0x1fff;
  out[5] = (w2 >>> 1) & 0x1fff;
  out[6] = (w2 >>> 14) & 0x1fff;
  out[7] = ((w2 >>> 27) | (w3 << 5)) & 0x1fff;
  out[8] = (w3 >>> 8) & 0x1fff;
  out[9] = (w3 >>> 21) | (hibit << 11);
}

/** Little-endian 32-bit word at byte i of b, zero past `end`. */
function word(b: Uint8Array, i: number, end: number): number {
  if (i + 4 <= end) return b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
  let w = 0;
  for (let k = 0; k < 4; k++) if (i + k < end) w |= b[i + k]! << (8 * k);
  return w;
}

/** Carry every limb into the next; what passes 2^130 comes back times 5. */
function carry(h: Float64Array): void {
  let c = 0;
  for (let i = 0; i < 10; i++) {
    const v = h[i]! + c;
    c = Math.floor(v * INV_LIMB);
    h[i] = v - c * LIMB;
  }
  h[0]! += c * 5;
  c = Math.floor(h[0]! * INV_LIMB);
  h[0]! -= c * LIMB;
  h[1]! += c;
}

/** h = (h + m) * r mod p (not fully reduced), with r5 = 5 r. */
function polyBlock(h: Float64Array, m: Float64Array, r: Float64Array, r5: Float64Array): void {
  for (let i = 0; i < 10; i++) h[i]! += m[i]!;
  for (let i = 0; i < 10; i++) {
    let sum = 0;
    for (let j = 0; j <= i; j++) sum += h[j]! * r[i - j]!;
    for (let j = i + 1; j < 10; j++) sum += h[j]! * r5[i - j + 10]!;
    d[i] = sum;
  }
  h.set(d);
  carry(h);
}

const h = new Float64Array(10);
const m = new Float64Array(10);
const r = new Float64Array(10);
const r5 = new Float64Array(10);
const d = new Float64Array(10);
const g = new Float64Array(10);

/** Whether the AEAD's Poly1305 tag for ct's body (`len` bytes, no AAD) under the one-time key `key` is ct's tag. */
function tagMatches(key: Uint8Array, ct: Uint8Array, len: number): boolean {
  // r, clamped.
  limbs(word(key, 0, 32) & 0x0fffffff, word(key, 4, 32) & 0x0ffffffc, word(key, 8, 32) & 0x0ffffffc, word(key, 12, 32) & 0x0ffffffc, 0, r);
  for (let i = 0; i < 10; i++) r5[i] = r[i]! * 5;
  h.fill(0);
  for (let o = 0; o < len; o += 16) {
    limbs(word(ct, o, len), word(ct, o + 4, len), word(ct, o + 8, len), word(ct, o + 12, len), 1, m);
    polyBlock(h, m, r, r5);
  }
  // The lengths block: le64(0) for the absent AAD, then le64(len).
  limbs(0, 0, len, 0, 1, m);
  polyBlock(h, m, r, r5);
  // Every limb below 2^13: carry through all of them once more (nothing passes 2^130 now).
  for (let i = 0, c = 0; i < 10; i++) {
    const v = h[i]! + c;
    c = Math.floor(v * INV_LIMB);
    h[i] = v - c * LIMB;
  }
  // h mod p: h - p when h >= p, i.e. when h + 5 reaches 2^130 (a carry out of the top limb).
  g.set(h);
  g[0]! += 5;
  let c = 0;
  for (let i = 0; i < 10; i++) {
    const v = g[i]! + c;
    c = Math.floor(v * INV_LIMB);
    g[i] = v - c * LIMB;
  }
  const x = c ? g : h;
  // Its low 128 bits as words, plus s, mod 2^128, against the tag.
  const hw = [
    (x[0]! | (x[1]! << 13) | (x[2]! << 26)) >>> 0,
    ((x[2]! >>> 6) | (x[3]! << 7) | (x[4]! << 20)) >>> 0,
    ((x[4]! >>> 12) | (x[5]! << 1) | (x[6]! << 14) | (x[7]! << 27)) >>> 0,
    ((x[7]! >>> 5) | (x[8]! << 8) | (x[9]! << 21)) >>> 0,
  ];
  let sum = 0;
  let diff = 0;
  for (let i = 0; i < 4; i++) {
    sum += hw[i]! + (word(key, 16 + 4 * i, 32) >>> 0);
    diff |= (sum >>> 0) ^ (word(ct, len + 4 * i, len + 16) >>> 0);
    sum = sum > 0xffffffff ? 1 : 0;
  }
  return diff === 0;
}

const block = new Int32Array(16);
const blockBytes = new Uint8Array(block.buffer);

/**
 * Opens `ciphertext` (body then 16-byte tag) with the key and nonce as little-endian 32-bit words
 * (8 and 3); throws if the tag does not match. Bodies up to 64 bytes (one keystream block).
 * Little-endian machines only (the keystream is read through a byte view of its words).
 */
export function openSmall(key: Int32Array, nonce: Int32Array, ciphertext: Uint8Array): Buffer {
  const len = ciphertext.length - 16;
  if (len < 0) throw new Error("ciphertext shorter than its tag");
  if (len > 64) throw new Error("openSmall is for bodies of at most 64 bytes");
  chachaBlock(key, 0, nonce, block);
  if (!tagMatches(blockBytes, ciphertext, len)) throw new Error("message authentication failed");
  chachaBlock(key, 1, nonce, block);
  const stream = blockBytes;
  const out = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) out[i] = ciphertext[i]! ^ stream[i]!;
  return out;
}

/** Whether openSmall can run here: it reads its keystream words as little-endian bytes. */
export const OPEN_SMALL_WORKS = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** A key or nonce as the little-endian 32-bit words openSmall takes. */
export function words(bytes: Uint8Array): Int32Array {
  const w = new Int32Array(bytes.length / 4);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < w.length; i++) w[i] = v.getInt32(i * 4, true);
  return w;
}
