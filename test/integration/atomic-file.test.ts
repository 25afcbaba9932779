/**
 * Small files put in place whole (src/local/atomic-file.ts): a metrics file written by root into a
 * directory another user may write (node_exporter's textfile directory), and a new identity file.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomically } from "../../src/local/atomic-file.ts";
import { Metrics } from "../../src/monitor/metrics.ts";
import { removeTempDirs, tempDir } from "../helpers/db.ts";

afterAll(removeTempDirs);

describe("writing a small file atomically", () => {
  test("a link planted where the temp file used to be named is never written through; the metrics file is a file of its own", () => {
    const dir = tempDir("atomic-metrics");
    const victim = join(dir, "victim");
    writeFileSync(victim, "secret\n");
    chmodSync(victim, 0o600);
    const textfiles = join(dir, "textfile");
    const target = join(textfiles, "vault.prom");
    mkdirSync(textfiles);
    // The name the temp file once took, which anyone who may write the directory could foresee.
    symlinkSync(victim, `${target}.${process.pid}.tmp`);
    new Metrics().writeFile(target);
    expect(readFileSync(victim, "utf8")).toBe("secret\n");
    expect(lstatSync(target).isFile()).toBe(true);
    expect(readFileSync(target, "utf8")).toContain("# TYPE sqlite_vault_backups_total counter");
    expect(readdirSync(textfiles).sort()).toEqual(["vault.prom", `vault.prom.${process.pid}.tmp`]);
  });

  test("without replace, an existing file is never replaced (EEXIST) and no temp file remains", () => {
    const dir = tempDir("atomic-noreplace");
    const path = join(dir, "identity.txt");
    writeFileSync(path, "the first identity\n");
    expect(() => writeFileAtomically(path, "another\n", { mode: 0o600, replace: false })).toThrow(
      expect.objectContaining({ code: "EEXIST" }),
    );
    expect(readFileSync(path, "utf8")).toBe("the first identity\n");
    expect(readdirSync(dir)).toEqual(["identity.txt"]);
    writeFileAtomically(join(dir, "new.txt"), "whole\n", { mode: 0o600, replace: false });
    expect(lstatSync(join(dir, "new.txt")).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).sort()).toEqual(["identity.txt", "new.txt"]);
  });
});
