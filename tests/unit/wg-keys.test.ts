import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { clamp, genKeyPair, pubKey } from "../../src/wireguard/keys.ts";

function wg(args: string[], input: string): string | undefined {
  try {
    return execFileSync("wg", args, { input, encoding: "utf8" }).trim();
  } catch {
    return undefined;
  }
}

describe("WireGuard keys in TypeScript", () => {
  it("matches the RFC 7748 X25519 base-point vector", () => {
    // RFC 7748 §6.1: Alice's private key and public key.
    const priv = Buffer.from("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", "hex");
    const pub = Buffer.from(pubKey(priv.toString("base64")), "base64").toString("hex");
    expect(pub).toBe("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  });

  it("clamps like wg genkey", () => {
    const k = clamp(new Uint8Array(32).fill(0xff));
    expect(k[0]).toBe(0xf8);
    expect(k[31]).toBe(0x7f);
  });

  it("agrees with `wg pubkey` for generated keys", () => {
    const probe = wg(["pubkey"], genKeyPair().privateKey);
    if (probe === undefined) {
      // wireguard-tools is installed by .ci/run; a bare dev machine can still run the rest.
      if (process.env.CI) throw new Error("wg (wireguard-tools) must be installed in CI");
      console.warn("wg not installed on this host: skipping the cross-check with `wg pubkey`");
      return;
    }
    for (let i = 0; i < 20; i++) {
      const pair = genKeyPair();
      expect(Buffer.from(pair.privateKey, "base64")).toHaveLength(32);
      expect(wg(["pubkey"], pair.privateKey)).toBe(pair.publicKey);
    }
  });

  it("agrees with keys made by `wg genkey`", () => {
    const priv = wg(["genkey"], "");
    if (!priv) return;
    expect(pubKey(priv)).toBe(wg(["pubkey"], priv));
  });
});
