/**
 * What ships: the binary ignores a hostile .env and bunfig.toml in its working directory, runs on a
 * machine without the source tree it was built from, reports its build, teaches with --help, and
 * install.sh installs it from a release (a local HTTP server serving a built dist/), verifying
 * SHA256SUMS and refusing a mismatch.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { createBankDb, removeTempDirs, tempDir } from "../helpers/db.ts";
import { ensureBinary, ROOT, runCli } from "../helpers/cli.ts";

setDefaultTimeout(120_000);
afterAll(removeTempDirs);

describe("a hostile working directory", () => {
  test("neither .env nor bunfig.toml changes where backups go or what runs", async () => {
    const dir = tempDir("hostile");
    const evilRepo = join(dir, "evil-repo");
    const marker = join(dir, "preload-ran");
    writeFileSync(join(dir, ".env"), `SQLITE_VAULT_REPO=${evilRepo}\nSQLITE_VAULT_COMPRESSION=none\nAWS_SECRET_ACCESS_KEY=leaked\n`);
    writeFileSync(join(dir, "evil.ts"), `require("node:fs").writeFileSync(${JSON.stringify(marker)}, "ran");`);
    writeFileSync(join(dir, "bunfig.toml"), 'preload = ["./evil.ts"]\n[install]\nregistry = "http://127.0.0.1:9/"\n');
    createBankDb(join(dir, "app.db"));
    const repo = join(dir, "good-repo");
    const r = await runCli(["backup", "app.db", "--repo", repo, "--json"], { cwd: dir });
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ repo: `file://${repo}`, compression: "gzip" });
    expect(existsSync(evilRepo)).toBe(false);
    expect(existsSync(marker)).toBe(false);
    // without --repo, the built-in default (not the .env's) is used
    const def = await runCli(["backup", "app.db", "--json"], { cwd: dir });
    expect(def.exitCode).toBe(0);
    expect(JSON.parse(def.stdout).repo).not.toContain("evil-repo");
    expect(existsSync(evilRepo)).toBe(false);
  });
});

describe("the executable away from the tree it was built in", () => {
  // Every other test runs the binary on the machine that built it, where paths baked in at build
  // time still exist. Users have only the binary: its worker threads (gzip compression, parallel
  // decompression, the integrity check) must load from inside it.
  test("backs up, restores and verifies once its build directory is gone", async () => {
    const dir = tempDir("moved");
    const tree = join(dir, "tree");
    mkdirSync(tree);
    for (const name of ["src", "scripts", "package.json", "tsconfig.json"]) cpSync(join(ROOT, name), join(tree, name), { recursive: true });
    symlinkSync(join(ROOT, "node_modules"), join(tree, "node_modules"));
    const build = Bun.spawnSync([process.execPath, join(tree, "scripts", "build.ts")], { cwd: tree, stdout: "pipe", stderr: "pipe" });
    expect(build.exitCode).toBe(0);
    const binary = join(dir, "sqlite-vault");
    renameSync(join(tree, "dist", "sqlite-vault"), binary);
    rmSync(tree, { recursive: true, force: true });

    createBankDb(join(dir, "app.db"));
    const repo = join(dir, "repo");
    const backup = await runCli(["backup", "app.db", "--repo", repo, "--compression", "gzip", "--json"], { cwd: dir, binary });
    expect(backup.stderr).toBe("");
    expect(backup.exitCode).toBe(0);
    const restore = await runCli(["restore", "app", "--repo", repo, "--output", "restored.db", "--json"], { cwd: dir, binary });
    expect(restore.stderr).toBe("");
    expect(restore.exitCode).toBe(0);
    const verify = await runCli(["verify", "--all", "--repo", repo], { cwd: dir, binary });
    expect(verify.exitCode).toBe(0);
    const rows = (path: string) => {
      const db = new Database(path, { readonly: true });
      try {
        return db.query("SELECT id, balance FROM accounts ORDER BY id").all();
      } finally {
        db.close();
      }
    };
    expect(rows(join(dir, "restored.db"))).toEqual(rows(join(dir, "app.db")));
  });
});

describe("version and help", () => {
  test("--version prints the version; version --json adds the build and the SQLite in use", async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    const short = await runCli(["--version"]);
    expect(short.stdout.trim()).toBe(pkg.version);
    const info = JSON.parse((await runCli(["version", "--json"])).stdout);
    expect(info).toMatchObject({
      version: pkg.version,
      target: `${process.platform}-${process.arch}`,
      sqlite: { source: "bundled", walResetFix: true },
    });
    expect(info.commit).toMatch(/^[0-9a-f]{7,}$/);
    expect(Date.parse(info.buildDate)).toBeGreaterThan(Date.parse("2026-01-01"));
    expect(info.bun).toMatch(/^\d+\.\d+\.\d+/);
    expect(info.sqlite.version).toMatch(/^3\.\d+\.\d+$/);
  });

  test("--help of every command lists its flags with env variables and defaults, and ends with examples", async () => {
    const root = await runCli(["--help"]);
    expect(root.exitCode).toBe(0);
    expect(root.stdout).toContain("EXAMPLES");
    expect(root.stdout).toContain("sqlite-vault backup /var/lib/app/app.db");
    for (const command of ["backup", "restore", "list", "verify", "prune", "doctor", "keygen", "cron", "status", "version"]) {
      const r = await runCli([command, "--help"]);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toContain("EXAMPLES");
      expect(r.stdout).toContain(`sqlite-vault ${command}`);
    }
    const backup = (await runCli(["backup", "--help"])).stdout;
    for (const text of [
      "SQLITE_VAULT_REPO",
      "SQLITE_VAULT_COMPRESSION",
      "default gzip",
      "--keep-daily",
      "--recipient",
      "SQLITE_VAULT_TMP_DIR",
      "--healthcheck-url",
    ])
      expect(backup).toContain(text);
  });
});

describe("install.sh", () => {
  let server: ReturnType<typeof Bun.serve>;
  let release: string;
  beforeAll(() => {
    release = tempDir("release");
    const file = `sqlite-vault-${process.platform === "darwin" ? "darwin" : "linux"}-${process.arch === "arm64" ? "arm64" : "x64"}`;
    copyFileSync(ensureBinary(), join(release, file));
    const sha = new Bun.CryptoHasher("sha256").update(readFileSync(join(release, file))).digest("hex");
    writeFileSync(join(release, "SHA256SUMS"), `${sha}  ${file}\n`);
    mkdirSync(join(release, "bad"));
    copyFileSync(join(release, file), join(release, "bad", file));
    writeFileSync(join(release, "bad", "SHA256SUMS"), `${"0".repeat(64)}  ${file}\n`);
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (request) => {
        const path = join(release, decodeURIComponent(new URL(request.url).pathname));
        return existsSync(path) ? new Response(Bun.file(path)) : new Response("not found", { status: 404 });
      },
    });
  });
  afterAll(() => server?.stop(true));

  /** Run install.sh without blocking this process, which serves the release. */
  async function install(url: string, prefix: string) {
    const proc = Bun.spawn(["sh", join(ROOT, "scripts", "install.sh"), "--url", url, "--prefix", prefix], {
      stderr: "pipe",
      stdout: "ignore",
    });
    const [exitCode, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    return { exitCode, stderr };
  }

  test("installs the matching binary after checking SHA256SUMS", async () => {
    const prefix = join(tempDir("install"), "bin");
    const r = await install(`http://127.0.0.1:${server.port}`, prefix);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain("installed");
    const version = Bun.spawnSync([join(prefix, "sqlite-vault"), "--version"]);
    expect(version.stdout.toString().trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  test("refuses a checksum mismatch and installs nothing", async () => {
    const prefix = join(tempDir("install-bad"), "bin");
    const r = await install(`http://127.0.0.1:${server.port}/bad`, prefix);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain("checksum mismatch");
    expect(existsSync(join(prefix, "sqlite-vault"))).toBe(false);
  });
});

describe("smoke.sh", () => {
  test("backs up, verifies and restores with the built executable, and fails on a broken one", async () => {
    const run = (binary: string) =>
      Bun.spawn(["bash", join(ROOT, "scripts", "smoke.sh"), binary], {
        stdout: "pipe",
        stderr: "pipe",
        env: { ...process.env, TMPDIR: tempDir("smoke") },
      });
    const ok = run(ensureBinary());
    const [out, code] = await Promise.all([new Response(ok.stdout).text(), ok.exited]);
    expect(code).toBe(0);
    expect(out).toContain("2 passed, 0 failed (integrity_check)");
    expect(out).toContain("smoke ok:");
    // An executable that cannot back up must fail the smoke test.
    const broken = join(tempDir("smoke-broken"), "sqlite-vault");
    writeFileSync(broken, `#!/bin/sh\n[ "$1" = "--version" ] && echo 0.0.0 && exit 0\nexit 1\n`, { mode: 0o755 });
    const bad = run(broken);
    expect(await bad.exited).not.toBe(0);
  });
});
