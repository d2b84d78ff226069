import { randomBytes } from "node:crypto";
import { x25519 } from "@noble/curves/ed25519.js";

/** A WireGuard key pair as `wg` prints it: 32-byte Curve25519 keys, standard base64. */
export interface WgKeyPair {
  privateKey: string;
  publicKey: string;
}

/** Clamp as `wg genkey` does, so the stored private key is byte-identical to what wg would keep. */
export function clamp(k: Uint8Array): Uint8Array {
  const c = Uint8Array.from(k);
  c[0]! &= 248;
  c[31]! = (c[31]! & 127) | 64;
  return c;
}

export function genKey(): string {
  return Buffer.from(clamp(randomBytes(32))).toString("base64");
}

/** `wg pubkey`: X25519 scalar multiplication of the base point. */
export function pubKey(privateKeyB64: string): string {
  const priv = Buffer.from(privateKeyB64.trim(), "base64");
  if (priv.length !== 32) throw new Error("a WireGuard private key is 32 bytes of base64");
  return Buffer.from(x25519.getPublicKey(priv)).toString("base64");
}

export function genKeyPair(): WgKeyPair {
  const privateKey = genKey();
  return { privateKey, publicKey: pubKey(privateKey) };
}
