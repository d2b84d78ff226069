import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, randomBytes } from "node:crypto";
import { x25519 } from "@noble/curves/ed25519.js";

/**
 * Tailscale's text form of a 32-byte key: a prefix naming its kind, then 64 hex digits
 * (tailscale types/key). Parsing accepts either hex case; the prefix and length are mandatory.
 */
export type KeyKind = "mkey" | "nodekey" | "discokey" | "privkey";

const HEX64 = /^[0-9a-fA-F]{64}$/;

export function formatKey(kind: KeyKind, raw: Uint8Array): string {
  if (raw.length !== 32) throw new Error(`a ${kind} key is 32 bytes, got ${raw.length}`);
  return `${kind}:${Buffer.from(raw).toString("hex")}`;
}

export function parseKey(kind: KeyKind, text: unknown): Uint8Array {
  if (typeof text !== "string" || !text.startsWith(`${kind}:`)) throw new Error(`not a ${kind} key: ${JSON.stringify(text)}`);
  const hex = text.slice(kind.length + 1);
  if (!HEX64.test(hex)) throw new Error(`a ${kind} key needs 64 hex digits: ${JSON.stringify(text)}`);
  return Uint8Array.from(Buffer.from(hex, "hex"));
}

/** The all-zero key, which the client sends for "no key" (e.g. OldNodeKey on first login). */
export function isZeroKey(raw: Uint8Array): boolean {
  return raw.every((b) => b === 0);
}

export const zeroKey = (kind: KeyKind): string => `${kind}:${"0".repeat(64)}`;

export interface KeyPair {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

export function newKeyPair(): KeyPair {
  // node:crypto, not noble's randomSecretKey: that needs globalThis.crypto, which the
  // container's Node 18 does not expose by default.
  const privateKey = Uint8Array.from(randomBytes(32));
  return { privateKey, publicKey: x25519.getPublicKey(privateKey) };
}

export function keyPairFrom(privateKey: Uint8Array): KeyPair {
  return { privateKey, publicKey: x25519.getPublicKey(privateKey) };
}

/** X25519; throws on a low-order (all-zero) result, as Go's curve25519.X25519 does. */
export function dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  const s = x25519.getSharedSecret(privateKey, publicKey);
  if (isZeroKey(s)) throw new Error("X25519 produced a low-order point");
  return s;
}

const b64url = (b: Uint8Array) => Buffer.from(b).toString("base64url");

/**
 * X25519 through node:crypto (OpenSSL): the same keys and secrets as newKeyPair() and dh(),
 * about ten times cheaper. The client side uses it (the load generator makes four key pairs
 * and four shared secrets per simulated node); the server keeps the functions above. Keys go
 * in and out as JWK: OpenSSL 3 parses DER key encodings several times slower than it derives.
 */
export const nativeX25519 = {
  newKeyPair(): KeyPair {
    const jwk = generateKeyPairSync("x25519").privateKey.export({ format: "jwk" });
    return {
      privateKey: Uint8Array.from(Buffer.from(jwk.d!, "base64url")),
      publicKey: Uint8Array.from(Buffer.from(jwk.x!, "base64url")),
    };
  },
  /** Our key pair with a peer's public key; throws on a low-order (all-zero) result, like dh(). */
  dh(own: KeyPair, peerPublic: Uint8Array): Uint8Array {
    let s: Buffer;
    try {
      s = diffieHellman({
        privateKey: createPrivateKey({
          key: { kty: "OKP", crv: "X25519", d: b64url(own.privateKey), x: b64url(own.publicKey) },
          format: "jwk",
        }),
        publicKey: createPublicKey({ key: { kty: "OKP", crv: "X25519", x: b64url(peerPublic) }, format: "jwk" }),
      });
    } catch (e) {
      // OpenSSL refuses to derive an all-zero secret.
      throw new Error(`X25519 failed (a low-order point?): ${(e as Error).message}`);
    }
    if (isZeroKey(s)) throw new Error("X25519 produced a low-order point");
    return Uint8Array.from(s);
  },
};
