/**
 * Encryption at rest with age, through the compiled binary, on both backends: recipients and
 * passphrases, interoperability with the age CLI, wrong keys, tampering, and keys that never leak
 * (every run is scanned for the secrets registered here: see registerSecret in test/helpers/cli.ts).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { Database } from "bun:sqlite";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ACCOUNTS, createBankDb, INITIAL_BALANCE, inspectBank, removeTempDirs, tempDir } from "../helpers/db.ts";
import { registerSecret, runCli, spawnCli } from "../helpers/cli.ts";
import { createTestBucket } from "../helpers/s3.ts";
import { localRepo, s3Repo, type TestRepo } from "../helpers/repos.ts";
import { readBackupManifest, readObject } from "../helpers/tamper.ts";
import { openStorage } from "../../src/storage/index.ts";

setDefaultTimeout(120_000);

let bucket: Awaited<ReturnType<typeof createTestBucket>>;
let keys: string;
let identity: string;
let recipient: string;
let otherIdentity: string;
let otherRecipient: string;
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
  const other = await runCli(["keygen", "-o", otherIdentity]);
  expect(other.exitCode).toBe(0);
  otherRecipient = other.stdout.trim();
  registerSecret(secretOf(otherIdentity));
});
afterAll(async () => {
  await bucket?.cleanup();
  removeTempDirs();
});

/** A fresh directory with a database and the path of a repository (not created). */
function scratch(label: string): { dir: string; db: string; repo: string } {
  const dir = tempDir(label);
  const db = join(dir, "app.db");
  createBankDb(db);
  return { dir, db, repo: join(dir, "repo") };
}

function secretOf(path: string): string {
  return readFileSync(path, "utf8")
    .split("\n")
    .find((l) => l.startsWith("AGE-SECRET-KEY-"))!;
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
      expect(said.stdout).toContain(
        "1 passed, 0 failed (integrity_check; 1 of them encrypted and checked by their stored bytes only, for want of a key)",
      );
      expect(said.stderr).toContain("only the stored bytes' SHA-256 was checked, not the database itself");

      const list = await runCli(["list", "--repo", repo.url], { env: repo.env });
      expect(list.stdout).toContain("gzip+age");
    });

    test("a passphrase from the environment or a file; a passphrase flag works but warns", async () => {
      const repo = make();
      const db = join(repo.dir, "app.db");
      createBankDb(db, { fillerRows: 200 });
      const b = await runCli(["backup", db, "--repo", repo.url, "--compression", "zstd"], {
        env: { ...repo.env, SQLITE_VAULT_PASSPHRASE: PASSPHRASE },
      });
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
      const wrong = await runCli(["restore", "--name", "app", "-o", join(repo.dir, "w.db"), "--repo", repo.url], {
        env: { ...repo.env, SQLITE_VAULT_PASSPHRASE: "not the passphrase" },
      });
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

  test("a key file any user may change is refused (exit 2): whoever may edit it chooses whom backups are encrypted to", async () => {
    const dir = tempDir("enc-trust");
    const db = join(dir, "app.db");
    createBankDb(db);
    const repo = join(dir, "repo");
    const recipients = join(dir, "recipients.txt");
    writeFileSync(recipients, `${recipient}\n`);
    chmodSync(recipients, 0o666);
    const r = await runCli(["backup", db, "--repo", repo, "--recipients-file", recipients]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(
      `the recipients file ${recipients} may be changed by any user (mode 0666): refusing settings another user could have written`,
    );
    const passphrase = join(dir, "passphrase.txt");
    writeFileSync(passphrase, "a passphrase anyone may rewrite\n");
    chmodSync(passphrase, 0o602);
    const loose = await runCli(["backup", db, "--repo", repo, "--passphrase-file", passphrase]);
    expect(loose.exitCode).toBe(2);
    expect(loose.stderr).toContain(`the passphrase file ${passphrase} may be changed by any user (mode 0602)`);
    expect(existsSync(repo)).toBe(false);
    chmodSync(recipients, 0o644);
    expect((await runCli(["backup", db, "--repo", repo, "--recipients-file", recipients])).exitCode).toBe(0);
  });
});

describe("keys asked for but not usable", () => {
  test("asking for encryption and naming no usable key is a usage error, never a plaintext backup", async () => {
    const { dir, db, repo } = scratch("enc-nokey");
    const empty = join(dir, "empty.txt");
    writeFileSync(empty, "");
    const comments = join(dir, "comments.txt");
    writeFileSync(comments, "# no key yet\n\n");
    const config = (body: string) => {
      const path = join(dir, `cfg-${Math.random().toString(36).slice(2)}.yml`);
      writeFileSync(path, `repo: ${repo}\n${body}\ndatabases:\n  - path: ${db}\n`);
      return path;
    };
    const cases: [string, string[], Record<string, string>][] = [
      ["--recipient with no value (an unset variable in a crontab)", ["--recipient"], {}],
      ["--recipient followed by another flag", ["--recipient", "--compression", "gzip"], {}],
      ["an empty recipients file", ["--recipients-file", empty], {}],
      ["a recipients file of comments", ["--recipients-file", comments], {}],
      ["--recipients-file ''", ["--recipients-file", ""], {}],
      ["--passphrase-file ''", ["--passphrase-file", ""], {}],
      ["--passphrase ''", ["--passphrase", ""], {}],
      ["SQLITE_VAULT_RECIPIENTS blank", [], { SQLITE_VAULT_RECIPIENTS: " " }],
      ["SQLITE_VAULT_RECIPIENTS empty", [], { SQLITE_VAULT_RECIPIENTS: "" }],
      ["SQLITE_VAULT_RECIPIENTS_FILE empty", [], { SQLITE_VAULT_RECIPIENTS_FILE: "" }],
      ["SQLITE_VAULT_PASSPHRASE empty", [], { SQLITE_VAULT_PASSPHRASE: "" }],
      ["--encryption and no key", ["--encryption"], {}],
      ["SQLITE_VAULT_ENCRYPTION=true and no key", [], { SQLITE_VAULT_ENCRYPTION: "true" }],
    ];
    for (const [what, flags, env] of cases) {
      const r = await runCli(["backup", db, "--repo", repo, ...flags], { env });
      expect(r.exitCode, `${what}: ${r.stderr}`).toBe(2);
      expect(r.stderr, what).toStartWith("sqlite-vault: ");
    }
    for (const body of [
      "encryption:\n  recipients: []",
      "encryption: {}",
      'encryption:\n  recipients: ["${UNSET_RECIPIENT:-}"]',
      'encryption:\n  recipients-file: ""',
    ]) {
      const r = await runCli(["backup", "--config", config(body)]);
      expect(r.exitCode, `${body}: ${r.stderr}`).toBe(2);
    }
    expect(existsSync(repo)).toBe(false); // nothing was backed up, encrypted or not
    // Identity files alone encrypt to their public keys, as `age -e -i` does: never a plaintext backup.
    const fromIdentity = await runCli(["backup", "--config", config(`encryption:\n  identity-files: [${identity}]`), "--json"]);
    expect(fromIdentity.exitCode, fromIdentity.stderr).toBe(0);
    expect(JSON.parse(fromIdentity.stdout).results[0].backup.encrypted).toBe(true);
    const manifest = await readBackupManifest(openStorage(repo), "app", JSON.parse(fromIdentity.stdout).results[0].backup.id);
    expect(manifest.stored.encryption).toEqual({ method: "age", mode: "recipients", recipients: [recipient] });
  });

  test("a mistyped identity is refused before any download, naming its file and never quoting it; a file with no identity is not 'no identity given'", async () => {
    const { dir, db, repo } = scratch("enc-badid");
    expect((await runCli(["backup", db, "--repo", repo, "--recipient", recipient])).exitCode).toBe(0);
    const secret = secretOf(identity);
    const typo = `${secret.slice(0, 40)}${secret.slice(40).replace(/[A-Z0-9]/, (c) => (c === "Q" ? "P" : "Q"))}`;
    const files = {
      typo: join(dir, "typo.txt"),
      cut: join(dir, "cut.txt"),
      garbage: join(dir, "garbage.txt"),
      lower: join(dir, "lower.txt"),
      recipients: join(dir, "public.txt"),
    };
    writeFileSync(files.typo, `# created: today\n${typo}\n`);
    writeFileSync(files.cut, `${secret.slice(0, 50)}\n`);
    writeFileSync(files.garbage, "garbage\n");
    writeFileSync(files.lower, `${secret.toLowerCase()}\n`);
    writeFileSync(files.recipients, `${recipient}\n`);
    for (const file of Object.values(files)) chmodSync(file, 0o600);
    const output = join(dir, "restored.db");
    for (const [what, file] of Object.entries(files))
      for (const command of [["restore", "--name", "app", "--output", output], ["verify"], ["verify", "--all", "--json"]]) {
        const r = await runCli([...command, "--repo", repo, "--identity", file]);
        expect(r.exitCode, `${what} ${command[0]}: ${r.stderr}`).toBe(2);
        expect(r.stderr).toContain(file);
        expect(r.stdout + r.stderr).not.toContain(secret.slice(16, 40));
        expect(r.stdout + r.stderr).not.toContain(secret.slice(16, 40).toLowerCase());
      }
    const inline = await runCli(["restore", "--name", "app", "--output", output, "--repo", repo, "--identity", typo]);
    expect(inline.exitCode).toBe(2);
    expect(inline.stderr).toContain("is not a valid age identity");
    expect(inline.stdout + inline.stderr).not.toContain(secret.slice(16, 40));
    expect(existsSync(output)).toBe(false);
  });

  test("verify --all with keys that open only some backups reports the others as failed and checks every one", async () => {
    const { db, repo } = scratch("enc-rotated");
    const ids: string[] = [];
    for (const to of [otherRecipient, recipient, recipient]) {
      const b = await runCli(["backup", db, "--repo", repo, "--recipient", to, "--json"]);
      expect(b.exitCode).toBe(0);
      ids.unshift(JSON.parse(b.stdout).id);
    }
    const r = await runCli(["verify", "--all", "--record", "--repo", repo, "--identity", identity, "--json"]);
    expect(r.exitCode).toBe(4);
    const report = JSON.parse(r.stdout);
    expect(report.results.map((x: { id: string; result: string }) => [x.id, x.result])).toEqual([
      [ids[0], "pass"],
      [ids[1], "pass"],
      [ids[2], "fail"],
    ]);
    expect(report.results[2].step).toBe("checksum");
    expect(report.results[2].message).toContain(`encrypted to ${otherRecipient}`);
    const list = JSON.parse((await runCli(["list", "--repo", repo, "--json"])).stdout);
    expect(list.backups.filter((b: { verifiedAt?: string }) => b.verifiedAt).map((b: { id: string }) => b.id)).toEqual([ids[0], ids[1]]);

    // restore --fallback passes over a newer backup these keys cannot open; without it, that is exit 12.
    const newest = await runCli(["backup", db, "--repo", repo, "--recipient", otherRecipient, "--json"]);
    const newestId = JSON.parse(newest.stdout).id;
    const output = join(repo, "..", "fallback.db");
    expect((await runCli(["restore", "--name", "app", "-o", output, "--repo", repo, "--identity", identity])).exitCode).toBe(12);
    const fellBack = await runCli([
      "restore",
      "--name",
      "app",
      "-o",
      output,
      "--repo",
      repo,
      "--identity",
      identity,
      "--fallback",
      "--json",
    ]);
    expect(fellBack.exitCode, fellBack.stderr).toBe(0);
    const restored = JSON.parse(fellBack.stdout);
    expect(restored.id).toBe(ids[0]);
    expect(restored.skipped.map((s: { id: string; step: string }) => [s.id, s.step])).toEqual([[newestId, "checksum"]]);
  });

  test("keys given and a plaintext backup found: refused (exit 12), passed over by --fallback, failed by verify; read only when allowed", async () => {
    const { dir, db, repo } = scratch("enc-planted");
    const encrypted = JSON.parse((await runCli(["backup", db, "--repo", repo, "--recipient", recipient, "--json"])).stdout).id;
    // A newer plaintext backup, as anyone who can write to the storage could store one.
    new Database(db).run("UPDATE accounts SET balance = 0 WHERE id = 1");
    const plain = await runCli(["backup", db, "--repo", repo, "--no-encryption", "--json"]);
    expect(plain.exitCode, plain.stderr).toBe(0);
    const plainId = JSON.parse(plain.stdout).id;
    const out = join(dir, "out.db");
    const restore = (args: string[], env: Record<string, string> = {}) =>
      runCli(["restore", "--name", "app", "-o", out, "--repo", repo, "--identity", identity, "--json", ...args], { env });

    const refused = await restore([]);
    expect(refused.exitCode).toBe(12);
    const error = JSON.parse(refused.stderr).error;
    expect(error.message).toContain(`backup ${plainId} is not encrypted, and keys to decrypt with were given`);
    expect(error.hint).toContain("--allow-unencrypted");
    expect(existsSync(out)).toBe(false);
    const passphraseFile = join(dir, "pass.txt");
    writeFileSync(passphraseFile, `${PASSPHRASE}\n`, { mode: 0o600 });
    const byPassphrase = await runCli(["restore", "--name", "app", "-o", out, "--repo", repo, "--passphrase-file", passphraseFile]);
    expect(byPassphrase.exitCode).toBe(12);
    expect(existsSync(out)).toBe(false);

    const fellBack = await restore(["--fallback"]);
    expect(fellBack.exitCode, fellBack.stderr).toBe(0);
    expect(JSON.parse(fellBack.stdout).id).toBe(encrypted);
    expect(JSON.parse(fellBack.stdout).skipped.map((s: { id: string; step: string }) => [s.id, s.step])).toEqual([[plainId, "checksum"]]);
    expect(inspectBank(out).total).toBe(ACCOUNTS * INITIAL_BALANCE);
    rmSync(out);

    const verify = await runCli(["verify", "--all", "--repo", repo, "--identity", identity, "--json"]);
    expect(verify.exitCode).toBe(4);
    expect(JSON.parse(verify.stdout).results.map((x: { id: string; result: string }) => [x.id, x.result])).toEqual([
      [plainId, "fail"],
      [encrypted, "pass"],
    ]);
    expect(JSON.parse(verify.stdout).results[0].message).toContain("is not encrypted");
    expect((await runCli(["verify", "--all", "--repo", repo, "--identity", identity, "--allow-unencrypted"])).exitCode).toBe(0);

    // Plaintext chosen in a layer under the keys' does not lower the guard on keys given for this run.
    expect((await restore([], { SQLITE_VAULT_ENCRYPTION: "false" })).exitCode).toBe(12);
    expect(existsSync(out)).toBe(false);
    // Said by name: the flag, or unencrypted backups chosen beside keys from the environment.
    for (const [args, env] of [
      [["--identity", identity, "--allow-unencrypted"], {}],
      [[], { SQLITE_VAULT_ENCRYPTION: "false", SQLITE_VAULT_IDENTITY_FILE: identity }],
    ] as [string[], Record<string, string>][]) {
      const allowed = await runCli(["restore", "--name", "app", "-o", out, "--repo", repo, "--json", ...args], { env });
      expect(allowed.exitCode, allowed.stderr).toBe(0);
      expect(JSON.parse(allowed.stdout).id).toBe(plainId);
      expect(inspectBank(out).total).toBe(ACCOUNTS * INITIAL_BALANCE - INITIAL_BALANCE);
      rmSync(out);
    }
    // Without keys nothing vouches either way: a plaintext repository restores as ever.
    expect((await runCli(["restore", "--name", "app", "-o", out, "--repo", repo])).exitCode).toBe(0);
  });

  test("a key named on the command line replaces the environment's, never joins it; config file key paths are relative to the config file", async () => {
    const { dir, db, repo } = scratch("enc-layers");
    const newKeys = join(dir, "new.txt");
    writeFileSync(newKeys, `${recipient}\n`);
    const runs = [
      await runCli(["backup", db, "--repo", repo, "--recipients-file", newKeys, "--json"], {
        env: { SQLITE_VAULT_RECIPIENTS: otherRecipient },
      }),
      await runCli(["backup", db, "--repo", repo, "--recipient", recipient, "--json"], {
        env: { SQLITE_VAULT_RECIPIENTS_FILE: join(keys, "does-not-matter.txt"), SQLITE_VAULT_PASSPHRASE: PASSPHRASE },
      }),
    ];
    for (const run of runs) {
      expect(run.exitCode, run.stderr).toBe(0);
      const manifest = await readBackupManifest(openStorage(repo), "app", JSON.parse(run.stdout).id);
      expect(manifest.stored.encryption?.recipients).toEqual([recipient]);
    }
    // The config names its key files relative to itself; the command runs elsewhere.
    const cfgDir = join(dir, "cfg");
    Bun.spawnSync(["mkdir", "-p", cfgDir]);
    writeFileSync(join(cfgDir, "recipients.txt"), `${recipient}\n`);
    writeFileSync(join(cfgDir, "id.txt"), readFileSync(identity));
    chmodSync(join(cfgDir, "id.txt"), 0o600);
    writeFileSync(
      join(cfgDir, "vault.yml"),
      `repo: ${join(dir, "repo2")}\nencryption:\n  recipients-file: recipients.txt\n  identity-files: [id.txt]\ndatabases:\n  - path: ../app.db\n`,
    );
    const backup = await runCli(["backup", "--config", join(cfgDir, "vault.yml")], { cwd: "/" });
    expect(backup.exitCode, backup.stderr).toBe(0);
    const verify = await runCli(["verify", "--config", join(cfgDir, "vault.yml"), "--json"], { cwd: "/" });
    expect(verify.exitCode, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout).results[0]).toMatchObject({ result: "pass", checked: "database" });
  });
});

describe("an encrypted backup name never turns plaintext without being told", () => {
  for (const [label, make] of backends)
    test(`${label}: with no key to encrypt to after encrypted backups, backup exits 2; an identity encrypts to its public key; --no-encryption says plaintext`, async () => {
      const repo = make();
      createBankDb(repo.db);
      const env = repo.env;
      const backup = async (args: string[], extra: Record<string, string> = {}) =>
        runCli(["backup", repo.db, "--repo", repo.url, "--json", ...args], { env: { ...env, ...extra } });
      const count = async () =>
        JSON.parse((await runCli(["list", "--name", "app", "--repo", repo.url, "--json"], { env })).stdout).backups.length;
      const recipientsOf = async (stdout: string) =>
        (await readBackupManifest(repo.storage, "app", JSON.parse(stdout).id)).stored.encryption;

      // A first backup may be plaintext: nothing says otherwise.
      expect((await backup([])).exitCode).toBe(0);
      expect((await backup(["--recipient", recipient])).exitCode).toBe(0);
      // The crontab that lost SQLITE_VAULT_RECIPIENTS: refused, nothing stored.
      const lost = await backup([]);
      expect(lost.exitCode, lost.stderr).toBe(2);
      expect(JSON.parse(lost.stderr).error.message).toContain("is encrypted, and no key to encrypt this one to was given");
      expect(JSON.parse(lost.stderr).error.hint).toContain("--no-encryption");
      expect(await count()).toBe(2);
      // The machine that restored with an identity encrypts to that identity's public key.
      for (const [args, extra] of [
        [["--identity", identity], {}],
        [[], { SQLITE_VAULT_IDENTITY_FILE: identity }],
      ] as [string[], Record<string, string>][]) {
        const r = await backup(args, extra);
        expect(r.exitCode, r.stderr).toBe(0);
        expect(await recipientsOf(r.stdout)).toEqual({ method: "age", mode: "recipients", recipients: [recipient] });
      }
      // A named recipient beats the identity (the identity only stands in when no key is named).
      const named = await backup(["--recipient", otherRecipient], { SQLITE_VAULT_IDENTITY_FILE: identity });
      expect(await recipientsOf(named.stdout)).toEqual({ method: "age", mode: "recipients", recipients: [otherRecipient] });
      // Plaintext only when said, and a key beside that is a contradiction.
      const both = await backup(["--no-encryption", "--recipient", recipient]);
      expect(both.exitCode).toBe(2);
      expect((await backup([], { SQLITE_VAULT_ENCRYPTION: "maybe" })).exitCode).toBe(2);
      const before = await count();
      for (const [args, extra] of [
        [["--no-encryption"], {}],
        [[], { SQLITE_VAULT_ENCRYPTION: "false" }],
      ] as [string[], Record<string, string>][]) {
        expect((await backup(["--recipient", recipient])).exitCode).toBe(0);
        const r = await backup(args, extra);
        expect(r.exitCode, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout).encrypted).toBe(false);
      }
      // After a plaintext backup, no key is needed.
      expect((await backup([])).exitCode).toBe(0);
      expect(await count()).toBe(before + 5);

      // A passphrase-encrypted name: identities alone cannot continue it (their keys could not open the old ones' series).
      const pass = join(repo.dir, "pass.txt");
      writeFileSync(pass, `${PASSPHRASE}\n`);
      chmodSync(pass, 0o600);
      expect((await backup(["--passphrase-file", pass])).exitCode).toBe(0);
      const onlyId = await backup(["--identity", identity]);
      expect(onlyId.exitCode, onlyId.stderr).toBe(2);
      expect(JSON.parse(onlyId.stderr).error.message).toContain("is encrypted with a passphrase, and only identities were given");
      expect((await backup([])).exitCode).toBe(2);
      expect((await backup(["--passphrase-file", pass])).exitCode).toBe(0);
    });

  test("config: encryption: false says plaintext, and a database's entry replaces the defaults' keys", async () => {
    const { dir, db, repo } = scratch("enc-cfg-plain");
    expect((await runCli(["backup", db, "--repo", repo, "--recipient", recipient])).exitCode).toBe(0);
    const config = join(dir, "vault.yml");
    writeFileSync(config, `repo: ${repo}\nencryption:\n  recipients: [${recipient}]\ndatabases:\n  - path: ${db}\n    encryption: false\n`);
    const plain = await runCli(["backup", "--config", config, "--json"]);
    expect(plain.exitCode, plain.stderr).toBe(0);
    expect(JSON.parse(plain.stdout).results[0].backup.encrypted).toBe(false);
  });

  test("cron's final backup is refused (exit 3) without a key after encrypted backups, and encrypts to --identity after a startup restore", async () => {
    const { dir, db, repo } = scratch("enc-cron");
    expect((await runCli(["backup", db, "--repo", repo, "--recipient", recipient])).exitCode).toBe(0);

    // cron with no key: its final backup fails (exit 3) and says why; nothing plaintext is stored.
    const before = JSON.parse((await runCli(["list", "--repo", repo, "--json"])).stdout).backups.length;
    const lost = await runCli(["cron", db, "--repo", repo, "--exec", "true"]);
    expect(lost.exitCode, lost.stderr).toBe(3);
    expect(lost.stderr).toContain("is encrypted, and no key to encrypt this one to was given");
    expect(JSON.parse((await runCli(["list", "--repo", repo, "--json"])).stdout).backups.length).toBe(before);
    // A new machine that restores with the identity keeps backing up encrypted, to it.
    mkdirSync(join(dir, "new"));
    const moved = join(dir, "new", "app.db");
    const restored = await runCli([
      "cron",
      moved,
      "--name",
      "app",
      "--repo",
      repo,
      "--restore-if-missing",
      "--identity",
      identity,
      "--exec",
      "true",
    ]);
    expect(restored.exitCode, restored.stderr).toBe(0);
    const newest = JSON.parse((await runCli(["list", "--repo", repo, "--json"])).stdout).backups[0];
    expect((await readBackupManifest(openStorage(repo), "app", newest.id)).stored.encryption?.recipients).toEqual([recipient]);

    // A plaintext backup newer than them: the startup restore with keys refuses it, and says the flag cron has.
    const plain = await runCli(["backup", moved, "--name", "app", "--repo", repo, "--no-encryption"]);
    expect(plain.exitCode, plain.stderr).toBe(0);
    const third = join(dir, "new", "third.db");
    const startup = (extra: string[]) =>
      runCli(["cron", third, "--name", "app", "--repo", repo, "--restore-if-missing", "--identity", identity, ...extra, "--exec", "true"]);
    const refused = await startup([]);
    expect(refused.exitCode, refused.stderr).toBe(12);
    expect(refused.stderr).toContain("pass --allow-unencrypted");
    expect(existsSync(third)).toBe(false);
    const allowed = await startup(["--allow-unencrypted"]);
    expect(allowed.exitCode, allowed.stderr).toBe(0);
    expect(existsSync(third)).toBe(true);
  });
});

describe("files read whole that are not small regular files", () => {
  /** The binary, killed if it has not ended within `ms`: a read that blocks for ever must fail the test, not hang it. */
  async function runWithin(ms: number, args: string[], env: Record<string, string> = {}) {
    const run = spawnCli(args, { env });
    const timer = setTimeout(() => run.kill("SIGKILL"), ms);
    const [stdout, stderr, exitCode] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
    clearTimeout(timer);
    return { stdout, stderr, exitCode };
  }

  test("a FIFO, a device or a huge file as a key or config file is refused before it is read (exit 2), never waited on or held in memory", async () => {
    const { dir, db, repo } = scratch("enc-special");
    const fifo = join(dir, "fifo");
    expect(Bun.spawnSync(["mkfifo", "-m", "600", fifo]).exitCode).toBe(0);
    const huge = join(dir, "huge.txt");
    writeFileSync(huge, "x".repeat(2 * 1024 * 1024));
    chmodSync(huge, 0o600);
    const link = join(dir, "link-to-fifo");
    symlinkSync(fifo, link);
    const cases: [string, string[], Record<string, string>, string][] = [
      ["--passphrase-file FIFO", ["backup", db, "--repo", repo, "--passphrase-file", fifo], {}, "FIFO"],
      ["--passphrase-file a link to a FIFO", ["backup", db, "--repo", repo, "--passphrase-file", link], {}, "FIFO"],
      ["SQLITE_VAULT_PASSPHRASE_FILE FIFO", ["backup", db, "--repo", repo], { SQLITE_VAULT_PASSPHRASE_FILE: fifo }, "FIFO"],
      ["--recipients-file FIFO", ["backup", db, "--repo", repo, "--recipients-file", fifo], {}, "FIFO"],
      ["--identity FIFO", ["restore", "--name", "app", "--output", join(dir, "out.db"), "--repo", repo, "--identity", fifo], {}, "FIFO"],
      ["--config FIFO", ["list", "--config", fifo], {}, "FIFO"],
      ["--passphrase-file /dev/zero", ["backup", db, "--repo", repo, "--passphrase-file", "/dev/zero"], {}, "character device"],
      ["--identity /dev/zero", ["verify", "--repo", repo, "--identity", "/dev/zero"], {}, "character device"],
      ["a 2 MiB passphrase file", ["backup", db, "--repo", repo, "--passphrase-file", huge], {}, "larger than 1 MiB"],
      ["a 2 MiB recipients file", ["backup", db, "--repo", repo, "--recipients-file", huge], {}, "larger than 1 MiB"],
      ["a 2 MiB config file", ["list", "--config", huge], {}, "larger than 1 MiB"],
    ];
    for (const [what, args, env, problem] of cases) {
      const r = await runWithin(15_000, args, env);
      expect(r.exitCode, `${what}: ${r.stderr}`).toBe(2);
      expect(r.stderr, what).toContain(problem);
      expect(r.stderr.trim().split("\n").at(-1), what).toStartWith("sqlite-vault: ");
    }
    expect(existsSync(repo)).toBe(false); // nothing was backed up
  });
});
