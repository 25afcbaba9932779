/**
 * Runs before any test file: the suite must not read or write the developer's real configuration.
 * HOME and XDG dirs point at a fresh temp dir, and AWS_* / SQLITE_VAULT_* variables are removed
 * (the test S3 server's settings, SQLITE_VAULT_TEST_*, are kept for test/helpers/s3.ts); EC2 instance
 * metadata is disabled.
 */
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const home = mkdtempSync(join(tmpdir(), "sqlite-vault-test-home-"));
// A hook in a preload runs once, after the last test file (bun test fires no "exit" event).
afterAll(() => rmSync(home, { recursive: true, force: true }));
process.env.HOME = home;
process.env.XDG_DATA_HOME = join(home, ".local", "share");
process.env.XDG_CONFIG_HOME = join(home, ".config");
process.env.XDG_CACHE_HOME = join(home, ".cache");
for (const key of Object.keys(process.env)) {
  if (key.startsWith("AWS_") || (key.startsWith("SQLITE_VAULT_") && !key.startsWith("SQLITE_VAULT_TEST_"))) delete process.env[key];
}
// A run with no credentials asks EC2's instance metadata address last; tests never send traffic
// there (the credential tests point it at a stand-in on 127.0.0.1 instead).
process.env.AWS_EC2_METADATA_DISABLED = "true";
