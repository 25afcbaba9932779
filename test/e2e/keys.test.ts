/**
 * Keys that travel with their targets, through the compiled binary: each configured database's
 * encryption entry gives its own keys to backup, verify, restore and cron (one on S3, one in a local
 * directory); key files are read only by commands that use keys; and a key flag without a value is
 * a usage error before the config file is read.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createBankDb, inspectBank, removeTempDirs, tempDir } from "../helpers/db.ts";
import { registerSecret, runCli } from "../helpers/cli.ts";
import { createTestBucket, s3Env, s3RepoUrl } from "../helpers/s3.ts";
import { readBackupManifest } from "../helpers/tamper.ts";
import { openStorage } from "../../src/storage/index.ts";

setDefaultTimeout(120_000);

let bucket: Awaited<ReturnType<typeof createTestBucket>>;
beforeAll(async () => {
  bucket = await createTestBucket("keys");
});
afterAll(async () => {
  await bucket?.cleanup();
  removeTempDirs();
});

/**
 * alpha (local directory) is encrypted to its own identity's public key, bee (S3) with its own
 * passphrase file; the file's defaults name a third key that neither uses.
 */
async function setup(label: string) {
  const dir = tempDir(label);
  createBankDb(join(dir, "alpha.db"));
  createBankDb(join(dir, "bee.db"));
  const made = await runCli(["keygen", "--output", join(dir, "alpha.key")]);
  expect(made.exitCode).toBe(0);
  registerSecret(readFileSync(join(dir, "alpha.key"), "utf8").match(/AGE-SECRET-KEY-\S+/)![0]);
  const unused = await runCli(["keygen", "--output", join(dir, "unused.key")]);
  writeFileSync(join(dir, "bee.pass"), `${registerSecret(`bee passphrase ${label} 42`)}\n`);
  chmodSync(join(dir, "bee.pass"), 0o600);
  const s3 = s3RepoUrl(bucket.bucket, label);
  const config = join(dir, "vault.yml");
  writeFileSync(
    config,
    [
      `repo: ${join(dir, "repo")}`,
      `encryption: { recipients: [${unused.stdout.trim()}] }`,
      "databases:",
      "  - path: alpha.db",
      "    encryption: { recipients-file: alpha.pub, identity-files: [alpha.key] }",
      "  - path: bee.db",
      `    repo: "${s3}"`,
      "    encryption: { passphrase-file: bee.pass }",
    ].join("\n"),
  );
  writeFileSync(join(dir, "alpha.pub"), `${made.stdout.trim()}\n`);
  return { dir, config, s3, alphaRecipient: made.stdout.trim() };
}

describe("keys per target from the config file", () => {
  test("backup, verify, restore --if-missing and cron each use every database's own keys", async () => {
    const { dir, config, s3, alphaRecipient } = await setup("keys-config");
    const env = s3Env();
    const backup = await runCli(["backup", "--config", config, "--json"], { env, cwd: "/" });
    expect(backup.exitCode, backup.stderr).toBe(0);
    const [alpha, bee] = JSON.parse(backup.stdout).results.map((r: { backup: { id: string } }) => r.backup.id);
    const alphaManifest = await readBackupManifest(openStorage(join(dir, "repo")), "alpha", alpha);
    expect(alphaManifest.stored.encryption).toEqual({ method: "age", mode: "recipients", recipients: [alphaRecipient] });
    const beeManifest = await readBackupManifest(openStorage(s3, { env }), "bee", bee);
    expect(beeManifest.stored.encryption).toEqual({ method: "age", mode: "passphrase", recipients: [] });

    const verify = await runCli(["verify", "--config", config, "--json"], { env });
    expect(verify.exitCode, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout).results.map((r: { name: string; checked: string }) => [r.name, r.checked])).toEqual([
      ["alpha", "database"],
      ["bee", "database"],
    ]);

    for (const f of ["alpha.db", "alpha.db-wal", "alpha.db-shm", "bee.db", "bee.db-wal", "bee.db-shm"])
      rmSync(join(dir, f), { force: true });
    const restore = await runCli(["restore", "--if-missing", "--config", config, "--json"], { env });
    expect(restore.exitCode, restore.stderr).toBe(0);
    for (const db of ["alpha.db", "bee.db"]) expect(inspectBank(join(dir, db)).integrity).toBe("ok");

    // cron: a startup restore with each database's keys, then a final backup encrypted as configured.
    rmSync(join(dir, "bee.db"));
    const cron = await runCli(["cron", "--config", config, "--restore-if-missing", "--exec", "true", "--json"], { env });
    expect(cron.exitCode, cron.stderr).toBe(0);
    expect(inspectBank(join(dir, "bee.db")).integrity).toBe("ok");
    const after = await runCli(["verify", "--config", config, "--json"], { env });
    expect(JSON.parse(after.stdout).results.map((r: { checked: string }) => r.checked)).toEqual(["database", "database"]);
  });

  test("a flag replaces every database's configured key; commands that use no key never read a key file", async () => {
    const { dir, config } = await setup("keys-lazy");
    const env = s3Env();
    expect((await runCli(["backup", "--config", config], { env })).exitCode).toBe(0);
    // With --identity, bee's passphrase file still opens bee (identities and passphrases are layered apart).
    const flagged = await runCli(["verify", "--config", config, "--identity", join(dir, "unused.key"), "--json"], { env });
    expect(flagged.exitCode).toBe(4);
    const results = JSON.parse(flagged.stdout).results.map((r: { name: string; result: string }) => [r.name, r.result]);
    expect(results).toEqual([
      ["alpha", "fail"],
      ["bee", "pass"],
    ]);
    rmSync(join(dir, "alpha.key"));
    rmSync(join(dir, "bee.pass"));
    for (const command of [["list"], ["status", "--max-age", "1h"], ["prune", "--keep-last", "5"]]) {
      const r = await runCli([...command, "--config", config], { env });
      expect(r.exitCode, `${command[0]}: ${r.stderr}`).toBe(0);
    }
    const verify = await runCli(["verify", "--config", config], { env });
    expect(verify.exitCode).toBe(2);
    expect(verify.stderr).toContain("alpha.key");
  });
});

describe("a key flag without a value", () => {
  test("is a usage error (exit 2) before the config file is read", async () => {
    const { dir, config } = await setup("keys-novalue");
    const restore = await runCli(["restore", "--if-missing", "--config", config, "--identity"], { env: s3Env() });
    expect(restore.exitCode).toBe(2);
    expect(restore.stderr).toContain("--identity needs a value");
    expect(restore.stdout).toBe("");
    writeFileSync(join(dir, "bad.yml"), "databases: [\n");
    for (const [command, flag] of [
      ["verify", "--identity"],
      ["backup", "--recipient"],
      ["cron", "--identity"],
    ] as const) {
      const r = await runCli([command, "--config", join(dir, "bad.yml"), flag]);
      expect(r.exitCode, `${command}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(`${flag} needs a value`);
    }
    expect(existsSync(join(dir, "repo"))).toBe(false);
  });
});
