/**
 * list over the repositories of a config file, through the compiled binary: databases that share a
 * repository are listed in one pass; with two or more repositories, one that cannot be listed is
 * named (exit 3, `failedRepositories` in --json) and the others are still listed; with one, its own
 * error and exit code are the command's, as ever. Nothing secret is ever printed.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createBankDb, tempDir } from "../helpers/db.ts";
import { registerSecret, runCli } from "../helpers/cli.ts";
import { s3Env, s3RepoUrl, useTestBucket } from "../helpers/s3.ts";

setDefaultTimeout(120_000);

const bucket = useTestBucket("e2e-list");

/** alpha and bee share a local repository, cee is on the S3 server, and gone's repository is `broken`. */
function setup(label: string, broken: string) {
  const dir = tempDir(label);
  for (const db of ["alpha.db", "bee.db", "cee.db", "gone.db"]) createBankDb(join(dir, db));
  const s3 = s3RepoUrl(bucket.bucket, label);
  const config = join(dir, "sqlite-vault.yml");
  const entries = [
    ["alpha.db", join(dir, "repo")],
    ["bee.db", join(dir, "repo")],
    ["cee.db", s3],
    ["gone.db", broken],
  ];
  const body = entries.map(([path, repo]) => `  - path: ${path}\n    repo: "${repo}"\n    retries: 0\n`).join("");
  writeFileSync(config, `databases:\n${body}`);
  return { dir, config, s3 };
}

const names = (list: { backups: { name: string }[] }) => list.backups.map((b) => b.name).sort();

describe("list over several repositories", () => {
  test("one that cannot be listed is named (exit 3) and the others are still listed", async () => {
    const missing = s3RepoUrl("no-such-bucket-for-list", "x");
    const { config } = setup("list-partial", missing);
    const secret = registerSecret("a-passphrase-list-never-prints");
    const env = s3Env({ SQLITE_VAULT_PASSPHRASE: secret });
    const backup = await runCli(["backup", "--config", config], { env });
    expect(backup.exitCode, backup.stderr).toBe(3);

    const json = await runCli(["list", "--config", config, "--json"], { env });
    expect(json.exitCode, json.stderr).toBe(3);
    const list = JSON.parse(json.stdout);
    expect(names(list)).toEqual(["alpha", "bee", "cee"]);
    expect(list.failedRepositories).toEqual([
      {
        repo: "s3://no-such-bucket-for-list/x",
        names: ["gone"],
        message: expect.stringContaining("no-such-bucket-for-list"),
        exitCode: 10,
      },
    ]);

    const text = await runCli(["list", "--config", config], { env });
    expect(text.exitCode).toBe(3);
    expect(text.stdout).toContain("alpha");
    expect(text.stdout).toContain("cee");
    expect(text.stdout).toContain("could not list s3://no-such-bucket-for-list/x (gone): ");
    expect(text.stderr).toContain("list of s3://no-such-bucket-for-list/x (gone) failed: ");
    expect(text.stdout + text.stderr + json.stdout + json.stderr).not.toContain(secret);
    // The endpoint's query is not part of a repository's name.
    expect(json.stdout).not.toContain("endpoint=");
  });

  test("the S3 server refusing the credentials: exit 3 with its exit code (12), the secret never printed", async () => {
    const { dir, config, s3 } = setup("list-auth", "");
    writeFileSync(
      config,
      `databases:\n  - path: alpha.db\n    repo: ${join(dir, "repo")}\n  - path: cee.db\n    repo: "${s3}"\n    retries: 0\n`,
    );
    expect((await runCli(["backup", "--config", config], { env: s3Env() })).exitCode).toBe(0);
    const wrong = "definitely-wrong-secret-for-list-4711";
    const env = s3Env({ AWS_SECRET_ACCESS_KEY: wrong });
    const json = await runCli(["list", "--config", config, "--json"], { env });
    expect(json.exitCode, json.stderr).toBe(3);
    const list = JSON.parse(json.stdout);
    expect(names(list)).toEqual(["alpha"]);
    expect(list.failedRepositories).toMatchObject([{ names: ["cee"], exitCode: 12 }]);
    const text = await runCli(["list", "--config", config], { env });
    expect(text.stdout).toContain("could not list s3://");
    expect(json.stdout + json.stderr + text.stdout + text.stderr).not.toContain(wrong);
  });

  test("one repository: its own error and exit code, as when it is named with --repo", async () => {
    const { dir } = setup("list-one", "");
    const one = join(dir, "one.yml");
    const absent = join(dir, "absent");
    writeFileSync(one, `repo: ${absent}\ndatabases:\n  - path: alpha.db\n  - path: bee.db\n`);
    const viaConfig = await runCli(["list", "--config", one, "--json"]);
    const viaRepo = await runCli(["list", "--repo", absent, "--json"]);
    expect(viaConfig.exitCode).toBe(10);
    expect(viaRepo.exitCode).toBe(10);
    expect(viaConfig.stdout).toBe("");
    expect(JSON.parse(viaConfig.stderr).error.exitCode).toBe(10);
  });

  test("databases that share a repository are listed once, each backup once", async () => {
    const { config } = setup("list-shared", join(tempDir("list-shared-gone"), "repo"));
    expect((await runCli(["backup", "--config", config], { env: s3Env() })).exitCode).toBe(0);
    const r = await runCli(["list", "--config", config, "--json"], { env: s3Env() });
    expect(r.exitCode, r.stderr).toBe(0);
    const list = JSON.parse(r.stdout);
    expect(names(list)).toEqual(["alpha", "bee", "cee", "gone"]);
    expect(list.failedRepositories).toBeUndefined();
    expect(list.repo.split(", ")).toHaveLength(3);
  });
});
