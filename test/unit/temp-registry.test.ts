import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TempRegistry } from "../../src/context.ts";

test("remove never throws (it runs in finally blocks, where its error would replace the one that matters)", () => {
  const dir = mkdtempSync(join(tmpdir(), "temp-registry-"));
  try {
    writeFileSync(join(dir, "file"), "");
    const temp = new TempRegistry();
    // Under a file, not a directory: rm fails with ENOTDIR, as it fails with EROFS on a read-only file system.
    const path = temp.add(join(dir, "file", "temp"));
    expect(() => temp.remove(path)).not.toThrow();
    expect(() => temp.removeAll()).not.toThrow();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
