import { dirname } from "node:path";
import { describe, expect, it } from "vitest";
import { containersConfPath } from "../../src/engine/ensure.ts";
import { OWN_PODMAN_SOCKET } from "../../src/paths.ts";

describe("the podman service's config", () => {
  it("is one per machine, beside its socket: another checkout's state dir does not change it", () => {
    const here = containersConfPath();
    const saved = process.env.WG3_STATE_DIR;
    process.env.WG3_STATE_DIR = "/tmp/another-checkout/.state";
    try {
      expect(containersConfPath()).toBe(here);
    } finally {
      if (saved === undefined) delete process.env.WG3_STATE_DIR;
      else process.env.WG3_STATE_DIR = saved;
    }
    expect(dirname(here)).toBe(dirname(OWN_PODMAN_SOCKET));
  });
});
