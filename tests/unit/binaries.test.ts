import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { cachedBinaries, ensureBinaries } from "../../src/binaries.ts";

describe("wireguard-go without Go", () => {
  const saved = { PATH: process.env.PATH, WG3_CACHE_DIR: process.env.WG3_CACHE_DIR };
  let cache: string;
  beforeEach(() => {
    cache = mkdtempSync(join(tmpdir(), "wg3-bin-"));
    process.env.WG3_CACHE_DIR = cache;
    process.env.PATH = "/nonexistent"; // no go on PATH
  });
  afterEach(() => {
    process.env.PATH = saved.PATH;
    if (saved.WG3_CACHE_DIR === undefined) delete process.env.WG3_CACHE_DIR;
    else process.env.WG3_CACHE_DIR = saved.WG3_CACHE_DIR;
    rmSync(cache, { recursive: true, force: true });
  });

  it("falls back to Debian's package in the image, caching nothing, so a later run with Go builds the pinned one", async () => {
    const set = await ensureBinaries("wireguard-go");
    expect(set.files).toEqual([]);
    expect(set.via).toMatch(/Debian's wireguard-go/);
    expect(cachedBinaries("wireguard-go")).toBeUndefined();
    expect(readdirSync(cache)).toEqual([]);
  });
});
