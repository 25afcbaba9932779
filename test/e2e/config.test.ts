/**
 * The config file through the compiled binary: every command acts on the configured databases, and
 * an invalid file is one clear message with the key and line (exit 2).
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, chownSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createBankDb, inspectBank, removeTempDirs, tempDir } from "../helpers/db.ts";
import { runCli } from "../helpers/cli.ts";

setDefaultTimeout(120_000);
afterAll(removeTempDirs);

function setup() {
  const dir = tempDir("config");
  createBankDb(join(dir, "alpha.db"));
  createBankDb(join(dir, "beta.sqlite"));
  const config = join(dir, "sqlite-vault.yml");
  writeFileSync(
    config,
    [
      "repo: ${VAULT_REPO}",
      "retention:",
      "  keep-last: 2",
      "databases:",
      "  - path: alpha.db",
      "  - path: beta.sqlite",
      "    name: bee",
      "    compression: zstd",
      "    retention:",
      "      keep-last: 1",
    ].join("\n"),
  );
  return { dir, config, env: { VAULT_REPO: join(dir, "repo") } };
}

describe("config file", () => {
  test("backup with no arguments backs up every configured database; list, prune and verify follow", async () => {
    const { dir, config, env } = setup();
    for (let i = 0; i < 3; i++) {
      const r = await runCli(["backup", "--config", config, "--json"], { env });
      expect(r.exitCode).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.results.map((o: { name: string; ok: boolean }) => [o.name, o.ok])).toEqual([
        ["alpha", true],
        ["bee", true],
      ]);
      expect(out.results[1].backup.compression).toBe("zstd");
    }
    // each database's own retention ran after its backup: alpha keeps 2, bee keeps 1
    const list = JSON.parse((await runCli(["list", "--config", config, "--json"], { env })).stdout);
    const count = (name: string) => list.backups.filter((b: { name: string }) => b.name === name).length;
    expect([count("alpha"), count("bee")]).toEqual([2, 1]);
    const verify = await runCli(["verify", "--all", "--config", config, "--json"], { env });
    expect(verify.exitCode).toBe(0);
    expect(JSON.parse(verify.stdout).results).toHaveLength(3);
    // the config file is found in the working directory too
    const here = await runCli(["list", "--json"], { env, cwd: dir });
    expect(JSON.parse(here.stdout).backups).toHaveLength(3);
    // prune uses the configured policies
    const prune = await runCli(["prune", "--config", config, "--keep-last", "1", "--json"], { env });
    expect(prune.exitCode).toBe(0);
    expect(JSON.parse((await runCli(["list", "--config", config, "--json"], { env })).stdout).backups).toHaveLength(2);
  });

  test("when some databases fail, backup exits 3 and names them", async () => {
    const { dir, config, env } = setup();
    rmSync(join(dir, "beta.sqlite"));
    const r = await runCli(["backup", "--config", config], { env });
    expect(r.exitCode).toBe(3);
    expect(r.stdout).toContain("FAILED bee");
    expect(r.stdout).toContain("failed: bee");
    expect(r.stdout).toContain("backed up alpha");
  });

  test("verify of every configured database reports one not backed up yet as failed, and still verifies the others", async () => {
    const { dir, config, env } = setup();
    expect((await runCli(["backup", "alpha.db", "--config", config], { env, cwd: dir })).exitCode).toBe(0);
    for (const all of [["--all"], []]) {
      const r = await runCli(["verify", ...all, "--config", config, "--json"], { env });
      expect(r.exitCode).toBe(4);
      const report = JSON.parse(r.stdout);
      expect(report.results.map((e: { name: string; result: string }) => [e.name, e.result])).toEqual([
        ["alpha", "pass"],
        ["bee", "fail"],
      ]);
      expect(report.results[1].message).toContain("no backups of bee");
    }
    const human = await runCli(["verify", "--config", config], { env });
    expect(human.stdout).toContain("FAILED bee -: no backups of bee");
    expect(human.stdout).toContain("1 passed, 1 failed");
  });

  test("restore --if-missing with no arguments restores every missing database", async () => {
    const { dir, config, env } = setup();
    expect((await runCli(["backup", "--config", config], { env })).exitCode).toBe(0);
    for (const f of ["alpha.db", "alpha.db-wal", "alpha.db-shm"]) rmSync(join(dir, f), { force: true });
    const r = await runCli(["restore", "--if-missing", "--config", config, "--json"], { env });
    expect(r.exitCode).toBe(0);
    const results = JSON.parse(r.stdout).results;
    expect(results.map((o: { name: string; result: { action: string } }) => [o.name, o.result.action])).toEqual([
      ["alpha", "restored"],
      ["bee", "skipped"],
    ]);
    expect(inspectBank(join(dir, "alpha.db")).integrity).toBe("ok");
  });

  test("verify, prune and restore --if-missing go on when one configured database fails, and exit 3", async () => {
    const { dir, config, env } = setup();
    writeFileSync(join(dir, "not-a-dir"), "");
    // bee's repository cannot exist: its parent is a file.
    writeFileSync(config, `${readFileSync(config, "utf8")}\n    repo: ${join(dir, "not-a-dir", "repo")}\n`);
    expect((await runCli(["backup", "--config", config], { env })).exitCode).toBe(3);
    for (const command of [["verify"], ["prune"]]) {
      const r = await runCli([...command, "--config", config, "--json"], { env });
      expect(r.exitCode, r.stderr).toBe(3);
      const report = JSON.parse(r.stdout);
      expect(report.failedDatabases.map((f: { name: string }) => f.name)).toEqual(["bee"]);
      expect(JSON.stringify(report)).toContain('"alpha"');
      const human = await runCli([...command, "--config", config], { env });
      expect(human.stderr).toContain(`${command[0]} of bee failed: `);
      expect(human.stdout).toContain(`could not ${command[0]} bee: `);
    }
    const only = join(dir, "only.yml");
    writeFileSync(only, `repo: ${join(dir, "not-a-dir", "repo")}\ndatabases:\n  - path: gone.db\n`);
    const restore = await runCli(["restore", "--if-missing", "--config", only], { env });
    expect(restore.exitCode, restore.stderr).toBe(3);
    expect(restore.stdout).toContain("FAILED gone");
  });

  test("status goes on when one configured database's repository cannot be read, and names it in its one line (exit 1)", async () => {
    const { dir, config, env } = setup();
    writeFileSync(join(dir, "not-a-dir"), "");
    writeFileSync(config, `${readFileSync(config, "utf8")}\n    repo: ${join(dir, "not-a-dir", "repo")}\n`);
    expect((await runCli(["backup", "--config", config], { env })).exitCode).toBe(3);
    const status = await runCli(["status", "--config", config], { env });
    expect(status.exitCode).toBe(1);
    expect(status.stderr).toContain("status of bee failed: ");
    expect(status.stderr.split("\n").filter((l) => l.startsWith("sqlite-vault: "))).toHaveLength(1);
    // Without its failing database, the same repository's status passes: alpha was checked.
    const fine = await runCli(["status", "--config", config, "--name", "alpha"], { env });
    expect(fine.exitCode, fine.stderr).toBe(0);
  });

  test("an invalid or missing config file is exit 2 with the key and line", async () => {
    const { dir, env } = setup();
    const bad = join(dir, "bad.yml");
    writeFileSync(bad, "repo: /x\ndatabases:\n  - path: a.db\n    retention:\n      keep-dayly: 3\n");
    const r = await runCli(["backup", "--config", bad], { env });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`${bad}:5: databases[0].retention.keep-dayly is not a retention setting`);
    const missing = await runCli(["list", "--config", join(dir, "nope.yml")], { env });
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain("does not exist");
    const unset = await runCli(["list", "--config", join(dir, "sqlite-vault.yml")], {});
    expect(unset.exitCode).toBe(2);
    expect(unset.stderr).toContain("${VAULT_REPO}, which is not set");
    // without expansion the repository is literally "${VAULT_REPO}", a directory that does not exist
    const literal = await runCli(["list", "--config", join(dir, "sqlite-vault.yml"), "--no-expand-env"], { cwd: dir });
    expect(literal.exitCode).toBe(10);
    expect(literal.stderr).toContain("${VAULT_REPO} does not exist");
    expect(existsSync(join(dir, "${VAULT_REPO}"))).toBe(false);
  });

  test("a config file any user may change, or one another user left in the working directory, is refused (exit 2): it never redirects root's backups", async () => {
    const { dir, config, env } = setup();
    const db = join(dir, "alpha.db");
    const planted = join(dir, "planted");
    // By any user, a world-writable file; as root, also a file of another user's (nobody's) in the working directory.
    writeFileSync(config, `repo: ${planted}\n`);
    chmodSync(config, 0o666);
    const writable = await runCli(["backup", db, "--name", "alpha"], { cwd: dir, env });
    expect(writable.exitCode).toBe(2);
    expect(writable.stderr).toContain(
      `config file ${config} may be changed by any user (mode 0666): refusing settings another user could have written`,
    );
    expect(writable.stderr).toContain(`Try: chmod o-w ${config}`);
    chmodSync(config, 0o644);
    if (process.getuid!() === 0) {
      chownSync(config, 65534, 65534);
      const owned = await runCli(["backup", db, "--name", "alpha"], { cwd: dir, env });
      expect(owned.exitCode).toBe(2);
      expect(owned.stderr).toContain(`config file ${config} is owned by uid 65534, neither this user (uid 0) nor root`);
      expect(owned.stderr).toContain(`Try: if it is meant to be read, name it: --config ${config}`);
      expect(existsSync(planted)).toBe(false);
      // Named on purpose (a bind mount keeps the host's owner), it is read.
      const named = await runCli(["list", "--config", config], { cwd: dir, env });
      expect(named.exitCode, named.stderr).toBe(10); // its repository does not exist yet: the file was read
      expect(named.stderr).toContain(planted);
      chownSync(config, 0, 0);
    }
    expect(existsSync(planted)).toBe(false);
    // This user's own file, not writable by others, is read as ever.
    const own = await runCli(["backup", db, "--name", "alpha"], { cwd: dir, env });
    expect(own.exitCode, own.stderr).toBe(0);
    expect(existsSync(planted)).toBe(true);
  });
});
