import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { UserError } from "../errors.ts";

export interface LabTls {
  caCert: string;
  cert: string;
  key: string;
}

/**
 * A fresh CA and server certificate for one lab start (never the same key twice): the CA
 * signs a server cert whose SANs are the control server's IP and host names.
 */
export async function makeLabTls(commonName: string, ips: string[], dnsNames: string[]): Promise<LabTls> {
  const dir = mkdtempSync(join(tmpdir(), "wg3ways-tls-"));
  const openssl = async (args: string[]) => {
    const r = await execa("openssl", args, { cwd: dir, reject: false, all: true });
    if (r.exitCode !== 0) {
      if ((r as { code?: string }).code === "ENOENT")
        throw new UserError("openssl is not installed; run ./start.ts setup (or apt-get install openssl).");
      throw new UserError(`openssl ${args[0]} failed: ${String(r.all).trim().split("\n").pop()}`);
    }
  };
  try {
    await openssl([
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "30",
      "-subj",
      "/CN=wg-3-ways lab CA",
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    const san = [...ips.map((i) => `IP:${i}`), ...dnsNames.map((d) => `DNS:${d}`)].join(",");
    writeFileSync(
      join(dir, "ext.cnf"),
      `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`,
    );
    await openssl([
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-subj",
      `/CN=${commonName}`,
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
    ]);
    await openssl([
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "30",
      "-extfile",
      "ext.cnf",
      "-out",
      "server.crt",
    ]);
    return {
      caCert: readFileSync(join(dir, "ca.crt"), "utf8"),
      cert: readFileSync(join(dir, "server.crt"), "utf8"),
      key: readFileSync(join(dir, "server.key"), "utf8"),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
