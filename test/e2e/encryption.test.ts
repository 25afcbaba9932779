/**
 * Encryption at rest with age, through the compiled binary, on both backends: recipients and
 * passphrases, interoperability with the age CLI, wrong keys, tampering, and keys that never leak
 * (every run is scanned for the secrets registered here: see registerSecret in test/helpers/cli.ts).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ACCOUNTS, createBankDb, INITIAL_BALANCE, inspectBank, removeTempDirs, tempDir } from "../helpers/db.ts";
import { registerSecret, runCli } from "../helpers/cli.ts";
import { createTestBucket } from "../helpers/s3.ts";
import { localRepo, s3Repo, type TestRepo } from "../helpers/repos.ts";
import { readBackupManifest, readObject } from "../helpers/tamper.ts";

setDefaultTimeout(120_000);

let bucket: Awaited<ReturnType<typeof createTestBucket>>;
let keys: string;
let identity: string;
let recipient: string;
let otherIdentity: string;
const PASSPHRASE = registerSecret("correct horse battery staple 7");

beforeAll(async () => {
  bucket = await createTestBucket("enc");
  keys = tempDir("enc-keys");
  identity = join(keys, "identity.txt");
  const made = await runCli(["keygen", "--output", identity]);
  expect(made.exitCode).toBe(0);
  recipient = made.stdout.trim();
  registerSecret(secretOf(identity));
  otherIdentity = join(keys, "other.txt");
  expect((await runCli(["keygen", "-o", otherIdentity])).exitCode).toBe(0);
  registerSecret(secretOf(otherIdentity));
});
afterAll(async () => {
  await bucket?.cleanup();
  removeTempDirs();
});

function secretOf(path: string): string {
  return readFileSync(path, "utf8").split("\n").find((l) => l.startsWith("AGE-SECRET-KEY-"))!;
}

const backends: [string, () => TestRepo][] = [
  ["local directory", () => localRepo("enc-local")],
  ["S3", () => s3Repo(bucket.bucket, "enc-s3")],
];

describe("keygen", () => {
  test("writes a 0600 identity, prints its public key, and never overwrites", async () => {
    expect(statSync(identity).mode & 0o777).toBe(0o600);
    expect(recipient).toMatch(/^age1[0-9a-z]{58}$/);
    expect(readFileSync(identity, "utf8")).toContain(`# public key: ${recipient}`);
    const before = readFileSync(identity, "utf8");
    const again = await runCli(["keygen", "--output", identity]);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toContain("refusing to overwrite");
    expect(readFileSync(identity, "utf8")).toBe(before);
    expect((await runCli(["keygen", "--json"])).exitCode).toBe(2);
  });
});

for (const [label, make] of backends) {
  describe(`encrypted backups: ${label}`, () => {
    test("recipients: the machine that backs up needs only the public key; restore and verify take the identity", async () => {
      const repo = make();
      const db = join(repo.dir, "app.db");
      createBankDb(db, { fillerRows: 2000 });
      const b = await runCli(["backup", db, "--repo", repo.url, "--recipient", recipient, "--json"], { env: repo.env });
      expect(b.exitCode).toBe(0);
      const { id, dataKey } = JSON.parse(b.stdout);
      expect(dataKey).toEndWith(".sqlite.gz.age");
      const manifest = await readBackupManifest(repo.storage, "app", id);
      expect(manifest.stored.encryption).toEqual({ method: "age", mode: "recipients", recipients: [recipient] });
      expect(new TextDecoder().decode(await readObject(repo.storage, dataKey)).startsWith("age-encryption.org/v1")).toBe(true);

      const out = join(repo.dir, "restored.db");
      const r = await runCli(["restore", "--name", "app", "-o", out, "--repo", repo.url, "--identity", identity], { env: repo.env });
      expect(r.exitCode).toBe(0);
      expect(inspectBank(out)).toMatchObject({ integrity: "ok", total: ACCOUNTS * INITIAL_BALANCE });

      const full = await runCli(["verify", "--repo", repo.url, "--identity", identity, "--json"], { env: repo.env });
      expect(full.exitCode).toBe(0);
      expect(JSON.parse(full.stdout).results[0]).toMatchObject({ result: "pass", checked: "database" });

      const blind = await runCli(["verify", "--repo", repo.url, "--json"], { env: repo.env });
      expect(blind.exitCode).toBe(0);
      expect(JSON.parse(blind.stdout).results[0]).toMatchObject({ result: "pass", checked: "stored-bytes" });
      const said = await runCli(["verify", "--repo", repo.url], { env: repo.env });
      expect(said.stdout).toContain("ok (stored bytes only)");
      expect(said.stderr).toContain("only the stored bytes' SHA-256 was checked, not the database itself");

      const list = await runCli(["list", "--repo", repo.url], { env: repo.env });
      expect(list.stdout).toContain("gzip+age");
    });

    test("a passphrase from the environment or a file; a passphrase flag works but warns", async () => {
      const repo = make();
      const db = join(repo.dir, "app.db");
      createBankDb(db, { fillerRows: 200 });
      const b = await runCli(["backup", db, "--repo", repo.url, "--compression", "zstd"], { env: { ...repo.env, SQLITE_VAULT_PASSPHRASE: PASSPHRASE } });
      expect(b.exitCode).toBe(0);
      const file = join(repo.dir, "pass.txt");
      writeFileSync(file, `${PASSPHRASE}\n`, { mode: 0o600 });
      const out = join(repo.dir, "restored.db");
      const r = await runCli(["restore", "--name", "app", "-o", out, "--repo", repo.url, "--passphrase-file", file], { env: repo.env });
      expect(r.exitCode).toBe(0);
      expect(inspectBank(out).integrity).toBe("ok");
      const flag = await runCli(["verify", "--repo", repo.url, "--passphrase", PASSPHRASE], { env: repo.env });
      expect(flag.exitCode).toBe(0);
      expect(flag.stderr).toContain("visible in the process list");
      const wrong = await runCli(["restore", "--name", "app", "-o", join(repo.dir, "w.db"), "--repo", repo.url], { env: { ...repo.env, SQLITE_VAULT_PASSPHRASE: "not the passphrase" } });
      expect(wrong.exitCode).toBe(12);
      expect(existsSync(join(repo.dir, "w.db"))).toBe(false);
    });

    test("a wrong identity exits 12 and a tampered ciphertext exits 4, the target untouched", async () => {
      const repo = make();
      const db = join(repo.dir, "app.db");
      createBankDb(db, { fillerRows: 2000 });
      const b = await runCli(["backup", db, "--repo", repo.url, "--recipient", recipient, "--json"], { env: repo.env });
      const { id, dataKey } = JSON.parse(b.stdout);
      const original = readFileSync(db);

      const wrong = await runCli(["restore", db, "--force", "--repo", repo.url, "--identity", otherIdentity], { env: repo.env });
      expect(wrong.exitCode).toBe(12);
      expect(wrong.stderr).toContain("none of the given identities or passphrases can decrypt");
      expect(readFileSync(db).equals(original)).toBe(true);
      const none = await runCli(["restore", db, "--force", "--repo", repo.url], { env: repo.env });
      expect(none.exitCode).toBe(12);
      expect(none.stderr).toContain("no identity or passphrase was given");

      const stored = await readObject(repo.storage, dataKey);
      const body = stored.slice();
      body[body.length >> 1]! ^= 0x01;
      await repo.storage.put(dataKey, body);
      const tampered = await runCli(["restore", db, "--force", "--repo", repo.url, "--identity", identity], { env: repo.env });
      expect(tampered.exitCode).toBe(4);
      expect(readFileSync(db).equals(original)).toBe(true);
      const verify = await runCli(["verify", "--repo", repo.url, "--identity", identity, "--json"], { env: repo.env });
      expect(verify.exitCode).toBe(4);
      expect(JSON.parse(verify.stdout).results[0]).toMatchObject({ id, step: "checksum" });

      // Damage in the header reads like a wrong key or does not parse at all; the checksum knows.
      for (const offset of [25, 40, 60, 80, 100]) {
        const header = stored.slice();
        header[offset]! ^= 0x01;
        await repo.storage.put(dataKey, header);
        const headerTampered = await runCli(["restore", db, "--force", "--repo", repo.url, "--identity", identity], { env: repo.env });
        expect(headerTampered.exitCode).toBe(4);
        expect(readFileSync(db).equals(original)).toBe(true);
      }
    });
  });
}

describe("interoperability and hygiene", () => {
  test("the age CLI decrypts a backup, and gunzip + sqlite3 open it", async () => {
    const dir = tempDir("enc-age-cli");
    const repo = join(dir, "repo");
    const db = join(dir, "app.db");
    createBankDb(db, { fillerRows: 500 });
    const b = await runCli(["backup", db, "--repo", repo, "--recipient", recipient, "--json"]);
    const { dataKey } = JSON.parse(b.stdout);
    const pipeline = Bun.spawnSync(["sh", "-c", `age --decrypt -i '${identity}' '${join(repo, dataKey)}' | gunzip > '${dir}/manual.db'`]);
    expect(pipeline.exitCode).toBe(0);
    const sqlite = Bun.spawnSync(["sqlite3", join(dir, "manual.db"), "PRAGMA integrity_check; SELECT SUM(balance) FROM accounts;"]);
    expect(sqlite.stdout.toString().trim().split("\n")).toEqual(["ok", String(ACCOUNTS * INITIAL_BALANCE)]);
  });

  test("an identity file readable by others gets a warning; a secret given as a recipient is refused", async () => {
    const dir = tempDir("enc-perms");
    const loose = join(dir, "loose.txt");
    writeFileSync(loose, readFileSync(identity));
    chmodSync(loose, 0o644);
    const repo = join(dir, "repo");
    const db = join(dir, "app.db");
    createBankDb(db);
    expect((await runCli(["backup", db, "--repo", repo, "--recipient", recipient])).exitCode).toBe(0);
    const r = await runCli(["verify", "--repo", repo, "--identity", loose]);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain("is readable by group or others");
    const misuse = await runCli(["backup", db, "--repo", repo, "--recipient", secretOf(identity)]);
    expect(misuse.exitCode).toBe(2);
    expect(misuse.stderr).toContain("that was a secret identity");
  });
});
