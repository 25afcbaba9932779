/**
 * What a repository may hold besides sound backups, and what a lost answer may leave: a backup dated
 * in the future (a wrong clock once, a planted manifest) or after this machine's clock, a listing that repeats entries, a manifest
 * stored whose answer never came. Through the compiled binary where the outcome is the user's, and
 * the fault proxy in front of the real S3 server for the network's part.
 */
import { describe, expect, test, setDefaultTimeout } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, rmSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runBackup } from "../../src/ops/backup.ts";
import { createContext } from "../../src/context.ts";
import { silentLogger, type Logger } from "../../src/logger.ts";
import { manifestKey } from "../../src/repo/manifest.ts";
import { StorageUnavailableError } from "../../src/errors.ts";
import { runPrune } from "../../src/ops/prune.ts";
import { parseDuration, parsePolicy } from "../../src/repo/retention.ts";
import type { ObjectInfo, PutOptions, Storage } from "../../src/storage/types.ts";
import { runCli } from "../helpers/cli.ts";
import { ACCOUNTS, createBankDb, INITIAL_BALANCE, inspectBank } from "../helpers/db.ts";
import { listings, on } from "../helpers/fault-proxy.ts";
import { localRepo, overriding, type TestRepo } from "../helpers/repos.ts";
import { useTestBucket, s3Env, s3RepoUrl } from "../helpers/s3.ts";
import { openStorage } from "../../src/storage/index.ts";

setDefaultTimeout(120_000);

const bucket = useTestBucket("e2e-anomalies", { proxy: true });
const proxy = bucket.proxy;

/** A repository on the real S3 server, reached through the fault proxy (its `storage`: directly). */
function proxiedRepo(label: string): TestRepo {
  const repo = localRepo(label);
  const prefix = `${label}-${Math.random().toString(36).slice(2, 10)}`;
  const env = s3Env();
  return {
    ...repo,
    url: `s3://${bucket.bucket}/${prefix}?endpoint=${encodeURIComponent(proxy.url)}`,
    env,
    storage: openStorage(s3RepoUrl(bucket.bucket, prefix), { env }),
    prefix,
  };
}

async function keys(storage: Storage): Promise<string[]> {
  const all: string[] = [];
  for await (const object of storage.list("")) all.push(object.key);
  return all;
}

async function backupsAt(repo: TestRepo, times: string[]): Promise<string[]> {
  createBankDb(repo.db, { fillerRows: 20 });
  const ids: string[] = [];
  for (const time of times) {
    const r = await runCli(["backup", repo.db, "--repo", repo.url, "--json"], { env: { ...repo.env, SQLITE_VAULT_NOW: time } });
    expect(r.exitCode, r.stderr).toBe(0);
    ids.unshift(JSON.parse(r.stdout).id);
  }
  return ids; // newest first
}

/**
 * A backup dated `time` and stored as if the storage's own clock said so too: what a host whose clock
 * ran ahead makes where no server keeps time (a local disk), or what someone plants. backup itself
 * refuses to date one after the storage's time.
 */
async function plantBackupAt(repo: TestRepo, time: string): Promise<string> {
  const at = new Date(time);
  const agreeing = overriding(repo.storage, {
    serverNow: () => undefined,
    stat: async (key) => {
      const info = await repo.storage.stat(key);
      return info && { ...info, lastModified: at };
    },
  });
  return (await runBackup(agreeing, { databasePath: repo.db, compression: "gzip", tmpDir: repo.dir, now: () => at }, createContext())).id;
}

async function listed(repo: TestRepo): Promise<{ id: string; futureDated: boolean }[]> {
  const r = await runCli(["list", "--repo", repo.url, "--json"], { env: repo.env });
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout).backups;
}

describe("a backup dated in the future", () => {
  test("is left alone and reported: backup --keep-last 1 keeps what it just made, restore --latest, verify and status pass over it, list marks it, --id still restores it", async () => {
    const repo = localRepo("e2e-future");
    const future = new Date(Date.now() + 30 * 86_400_000).toISOString();
    const [old = ""] = await backupsAt(repo, ["2026-01-01T00:00:00.000Z"]);
    const planted = await plantBackupAt(repo, future);

    // A negative age never passes: the newest backup a restore would take is months old.
    const status = await runCli(["status", "--name", "app", "--max-age", "1h", "--repo", repo.url], { env: repo.env });
    expect(status.exitCode, status.stdout).toBe(1);
    expect(status.stderr).toContain(`passing over app ${planted}`);
    expect(status.stderr).toContain("older than 1h");

    const out = join(repo.dir, "latest.db");
    const restore = await runCli(["restore", "--name", "app", "-o", out, "--repo", repo.url], { env: repo.env });
    expect(restore.exitCode, restore.stderr).toBe(0);
    expect(restore.stdout).toContain(`restored app ${old}`);
    expect(restore.stderr).toContain(`passing over app ${planted}`);

    const backup = await runCli(["backup", repo.db, "--repo", repo.url, "--keep-last", "1", "--json"], { env: repo.env });
    expect(backup.exitCode, backup.stderr).toBe(0);
    const made = JSON.parse(backup.stdout);
    expect(made.prune.names[0].keep.map((k: { id: string }) => k.id)).toEqual([made.id]);
    expect(made.prune.names[0].futureDated.map((f: { id: string }) => f.id)).toEqual([planted]);
    expect(made.prune.names[0].removed).toEqual([old]);
    expect(await listed(repo)).toEqual([
      expect.objectContaining({ id: planted, futureDated: true }),
      expect.objectContaining({ id: made.id, futureDated: false }),
    ]);

    const human = await runCli(["list", "--repo", repo.url], { env: repo.env });
    expect(human.stdout).toContain("(future)");
    const dry = await runCli(["prune", "--repo", repo.url, "--keep-last", "1", "--dry-run"], { env: repo.env });
    expect(dry.stdout).toMatch(new RegExp(`${planted} .* left alone .*dated in the future`));
    expect(dry.stderr).toContain(`leaving alone app ${planted}: it is dated ${future}, later than the storage stored it (`);

    const fresh = await runCli(["status", "--name", "app", "--max-age", "1h", "--repo", repo.url, "--json"], { env: repo.env });
    expect(fresh.exitCode, fresh.stderr).toBe(0);
    const entry = JSON.parse(fresh.stdout).databases[0];
    expect(entry.newest.id).toBe(made.id);
    expect(entry.newest.ageSeconds).toBeGreaterThanOrEqual(0);
    expect(entry.futureDated).toEqual([planted]);
    // verify's newest is what restore --latest takes.
    const verify = await runCli(["verify", "--name", "app", "--repo", repo.url, "--json"], { env: repo.env });
    expect(verify.exitCode, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout).results.map((e: { id: string }) => e.id)).toEqual([made.id]);

    const byId = join(repo.dir, "planted.db");
    const r = await runCli(["restore", "--name", "app", "--id", planted, "-o", byId, "--repo", repo.url], { env: repo.env });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(inspectBank(byId).integrity).toBe("ok");
  });

  test("--json: a failed run's error object carries the warnings too (what it passed over before it failed)", async () => {
    const repo = localRepo("e2e-json-warnings");
    const [old = ""] = await backupsAt(repo, ["2026-01-01T00:00:00.000Z"]);
    const planted = await plantBackupAt(repo, new Date(Date.now() + 86_400_000).toISOString());
    for (const name of readdirSync(join(repo.url, "app")))
      if (name.startsWith(old) && name.includes(".sqlite")) rmSync(join(repo.url, "app", name));
    const r = await runCli(["restore", "--name", "app", "-o", join(repo.dir, "out.db"), "--repo", repo.url, "--json"], { env: repo.env });
    expect(r.exitCode).toBe(4);
    const body = JSON.parse(r.stderr);
    expect(body.error).toMatchObject({ code: "verification", exitCode: 4 });
    expect(body.warnings).toEqual([expect.stringMatching(new RegExp(`^passing over app ${planted}: it is dated `))]);
  });

  test("a backup a minute ahead (another host's clock) is within the tolerance: newest, kept, never a negative age", async () => {
    const repo = localRepo("e2e-future-tolerance");
    const ahead = new Date(Date.now() + 60_000).toISOString();
    const [newest = ""] = await backupsAt(repo, ["2026-01-01T00:00:00.000Z", ahead]);
    const status = await runCli(["status", "--name", "app", "--max-age", "1h", "--repo", repo.url, "--json"], { env: repo.env });
    expect(status.exitCode, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).databases[0].newest).toMatchObject({ id: newest, ageSeconds: 0 });
    const prune = await runCli(["prune", "--repo", repo.url, "--keep-last", "1", "--json"], { env: repo.env });
    expect(prune.exitCode, prune.stderr).toBe(0);
    expect(JSON.parse(prune.stdout).names[0].keep.map((k: { id: string }) => k.id)).toEqual([newest]);
  });

  test("the storage's own time is the second clock: a backup dated after S3 stored it is passed over for good, also once this machine's clock reaches its date", async () => {
    const repo = proxiedRepo("e2e-server-clock");
    const ahead = new Date(Date.now() + 40 * 60_000);
    // Dated 40 minutes ahead of the time S3 stored it (a clock that ran ahead, or planted), then a backup made after it.
    const [older = ""] = await backupsAt(repo, ["2026-01-01T00:00:00.000Z"]);
    const planted = await plantBackupAt(repo, ahead.toISOString());
    const made = await runCli(["backup", repo.db, "--repo", repo.url], { env: repo.env });
    expect(made.exitCode, made.stderr).toBe(0);
    expect(made.stderr).toContain(`passing over app ${planted}: it is dated ${ahead.toISOString()}, later than the storage stored it (`);
    const newest = /^backed up app (\S+):/.exec(made.stdout)?.[1] ?? "";
    expect(newest < planted).toBe(true);
    // An hour on, by this machine's clock and the server's: the planted backup's date is past, and it still orders nothing.
    const later = { ...repo.env, SQLITE_VAULT_NOW: new Date(ahead.getTime() + 20 * 60_000).toISOString() };
    proxy.clear();
    proxy.add({
      fault: { kind: "headers", headers: (h) => ({ ...h, date: new Date(Date.now() + 3600_000).toUTCString() }) },
      times: Infinity,
    });
    try {
      const out = join(repo.dir, "out.db");
      const restore = await runCli(["restore", "--name", "app", "-o", out, "--repo", repo.url, "--json"], { env: later });
      expect(restore.exitCode, restore.stderr).toBe(0);
      expect(JSON.parse(restore.stdout).id).toBe(newest);
      // --json prints nothing else: what it passed over is in the document.
      expect(restore.stderr).toBe("");
      expect(JSON.parse(restore.stdout).warnings).toEqual([
        expect.stringMatching(new RegExp(`^passing over app ${planted}: it is dated `)),
      ]);
      const status = await runCli(["status", "--name", "app", "--repo", repo.url, "--json"], { env: later });
      expect(JSON.parse(status.stdout).databases[0]).toMatchObject({ newest: { id: newest }, futureDated: [planted] });
      const prune = await runCli(["prune", "--repo", repo.url, "--keep-last", "1", "--json"], { env: later });
      expect(prune.exitCode, prune.stderr).toBe(0);
      const plan = JSON.parse(prune.stdout).names[0];
      expect(plan.keep.map((k: { id: string }) => k.id)).toEqual([newest]);
      expect(plan.removed).toEqual([older]);
      expect((await listed(repo)).map((b) => [b.id, b.futureDated])).toEqual([
        [planted, true],
        [newest, false],
      ]);
    } finally {
      proxy.clear();
    }
  });

  test("prune never removes a protected backup (the one backup --keep-… just made), whatever the plan: it refuses before deleting anything", async () => {
    const repo = localRepo("e2e-protect");
    const ids = await backupsAt(repo, ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z", "2026-01-03T00:00:00.000Z"]);
    const oldest = ids[2]!;
    const run = runPrune(
      repo.storage,
      {
        name: "app",
        policy: parsePolicy({ "keep-last": "1" }),
        grace: parseDuration("24h"),
        now: new Date("2026-01-04T00:00:00Z"),
        protect: [{ name: "app", id: oldest }],
      },
      createContext(),
    );
    await expect(run).rejects.toThrow(
      `refusing to prune: the plan would delete ${manifestKey("app", oldest)}, which belongs to app ${oldest}, the backup just made; nothing was deleted`,
    );
    expect((await listed(repo)).map((b) => b.id)).toEqual(ids);
  });
});

describe("a clock behind the newest backup", () => {
  test("a backup that would be dated before the newest one stored is refused: restore --latest would pass over it and bring back the older data", async () => {
    const repo = localRepo("e2e-clock-behind");
    // The newest backup came from a host whose clock ran 5 minutes ahead (within the tolerance).
    const aheadAt = new Date(Date.now() + 5 * 60_000).toISOString();
    const [newest = ""] = await backupsAt(repo, [aheadAt]);
    const before = await keys(repo.storage);
    const r = await runCli(["backup", repo.db, "--repo", repo.url], { env: repo.env });
    expect(r.exitCode).toBe(1);
    const [line = "", hint, ...rest] = r.stderr.trim().split("\n");
    expect(line).toStartWith(`sqlite-vault: the newest backup of app (${newest}) is dated ${aheadAt}, after this machine's clock (`);
    expect(line).toEndWith(
      "): a backup made now would sort before it, and restore --latest would bring back that older one; nothing was backed up",
    );
    expect(hint).toStartWith("Try: backups are ordered by the time they are made: set this machine's clock right (NTP)");
    expect(rest).toEqual([]);
    const json = await runCli(["backup", repo.db, "--repo", repo.url, "--json"], { env: repo.env });
    expect(json.exitCode).toBe(1);
    expect(JSON.parse(json.stderr).error).toMatchObject({ code: "clock", exitCode: 1 });
    // Nothing stored, nothing left behind.
    expect(await keys(repo.storage)).toEqual(before);
    expect((await listed(repo)).map((b) => b.id)).toEqual([newest]);
  });

  test("a clock a day behind the newest backup (set back, or a host booted before NTP) is refused too: beyond the tolerance as within it", async () => {
    const repo = localRepo("e2e-clock-set-back");
    const [newest = ""] = await backupsAt(repo, ["2026-01-02T00:00:00.000Z"]);
    const before = await keys(repo.storage);
    const env = { ...repo.env, SQLITE_VAULT_NOW: "2026-01-01T00:00:00.000Z" };
    const r = await runCli(["backup", repo.db, "--repo", repo.url, "--json"], { env });
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stderr).error).toMatchObject({ code: "clock", exitCode: 1 });
    expect(await keys(repo.storage)).toEqual(before);
    // Once the clock is right (the test clock unset), backups go on, dated after it.
    const right = await runCli(["backup", repo.db, "--repo", repo.url, "--json"], { env: repo.env });
    expect(right.exitCode, right.stderr).toBe(0);
    expect((await listed(repo)).map((b) => b.id)).toEqual([JSON.parse(right.stdout).id, newest]);
  });

  test("a newest backup dated a day ahead by this machine's own clock (then set right) holds backups back, says how to resume, and removing its manifest resumes them", async () => {
    const repo = localRepo("e2e-clock-was-ahead");
    const ahead = new Date(Date.now() + 86_400_000);
    createBankDb(repo.db, { fillerRows: 20 });
    const newest = await plantBackupAt(repo, ahead.toISOString());
    // The clock that dated it also dated the file: the storage's time says nothing against it.
    const manifest = join(repo.url, manifestKey("app", newest));
    utimesSync(manifest, ahead, ahead);
    const r = await runCli(["backup", repo.db, "--repo", repo.url], { env: repo.env });
    expect(r.exitCode).toBe(1);
    const [line = "", hint, ...rest] = r.stderr.trim().split("\n");
    expect(line).toStartWith(
      `sqlite-vault: the newest backup of app (${newest}) is dated ${ahead.toISOString()}, after this machine's clock (`,
    );
    expect(hint).toEndWith(
      `backups resume once this clock passes it, or at once if its manifest ${manifestKey("app", newest)} is removed from file://${repo.url}`,
    );
    expect(rest).toEqual([]);
    const status = await runCli(["status", "--name", "app", "--max-age", "1h", "--repo", repo.url], { env: repo.env });
    expect(status.exitCode).toBe(1);
    expect(status.stderr).toContain(`is dated ${ahead.toISOString()}, after this machine's clock (`);
    rmSync(manifest);
    const resumed = await runCli(["backup", repo.db, "--repo", repo.url], { env: repo.env });
    expect(resumed.exitCode, resumed.stderr).toBe(0);
  });

  test("a clock more than 15 minutes ahead of the storage's makes no backup that every restore would pass over: refused (exit 1), nothing left, on a local directory and on S3", async () => {
    for (const repo of [localRepo("e2e-clock-ahead"), proxiedRepo("e2e-clock-ahead-s3")]) {
      createBankDb(repo.db, { fillerRows: 20 });
      proxy.clear();
      const ahead = new Date(Date.now() + 3600_000).toISOString();
      const r = await runCli(["backup", repo.db, "--repo", repo.url, "--json"], { env: { ...repo.env, SQLITE_VAULT_NOW: ahead } });
      expect(r.exitCode, repo.url).toBe(1);
      const error = JSON.parse(r.stderr).error;
      expect(error).toMatchObject({ code: "clock", exitCode: 1, hint: "set this machine's clock right (NTP)" });
      expect(error.message).toStartWith(`this machine's clock (${ahead}) is more than 15 minutes ahead of the storage's (`);
      expect(error.message).toEndWith("restores pass over a backup dated after it was stored, so nothing was backed up");
      expect(await keys(repo.storage)).toEqual([]);
      // S3 tells its time (the Date header): refused before anything is read or sent.
      if (repo.prefix) expect(proxy.requests.filter((r) => !r.startsWith("GET "))).toEqual([]);
    }
  });

  test("prune on S3 by a clock more than 15 minutes ahead of the server's is refused (exit 1): --keep-within would take recent backups for old ones", async () => {
    const repo = proxiedRepo("e2e-prune-ahead");
    const ids = await backupsAt(repo, ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"]);
    const ahead = new Date(Date.now() + 365 * 86_400_000).toISOString();
    const r = await runCli(["prune", "--repo", repo.url, "--keep-within", "30d", "--json"], {
      env: { ...repo.env, SQLITE_VAULT_NOW: ahead },
    });
    expect(r.exitCode).toBe(1);
    const error = JSON.parse(r.stderr).error;
    expect(error).toMatchObject({ code: "clock", exitCode: 1 });
    expect(error.message).toEndWith("retention planned by it could take recent backups for old ones, so nothing was removed");
    expect((await listed(repo)).map((b) => b.id)).toEqual(ids);
  });

  test("a clock a moment behind the newest backup waits until it passes it: the new backup is the newest, and what restore --latest brings back", async () => {
    const repo = localRepo("e2e-clock-moment");
    const [ahead = ""] = await backupsAt(repo, [new Date(Date.now() + 1_000).toISOString()]);
    const made = await runCli(["backup", repo.db, "--repo", repo.url, "--json"], { env: repo.env });
    expect(made.exitCode, made.stderr).toBe(0);
    const id = JSON.parse(made.stdout).id as string;
    expect(id > ahead).toBe(true);
    expect((await listed(repo)).map((b) => b.id)).toEqual([id, ahead]);
    const out = join(repo.dir, "latest.db");
    const restore = await runCli(["restore", "--name", "app", "-o", out, "--repo", repo.url, "--json"], { env: repo.env });
    expect(restore.exitCode, restore.stderr).toBe(0);
    expect(JSON.parse(restore.stdout).id).toBe(id);
  });
});

describe("a backup whose data object is missing or cut short", () => {
  test("list marks it DAMAGED, says why on stderr and in --json, and lists the sound ones as ever", async () => {
    const repo = localRepo("e2e-list-damaged");
    const [gone = "", cut = "", sound = ""] = await backupsAt(repo, [
      "2026-01-01T00:00:00.000Z",
      "2026-01-02T00:00:00.000Z",
      "2026-01-03T00:00:00.000Z",
    ]);
    const data = (id: string) =>
      join(repo.url, "app", readdirSync(join(repo.url, "app")).find((n) => n.startsWith(id) && n.includes(".sqlite"))!);
    rmSync(data(gone));
    truncateSync(data(cut), 100);
    const json = await runCli(["list", "--repo", repo.url, "--json"], { env: repo.env });
    expect(json.exitCode, json.stderr).toBe(0);
    const rows = JSON.parse(json.stdout).backups as { id: string; damaged: string | null }[];
    expect(rows.map((b) => [b.id, b.damaged])).toEqual([
      [gone, expect.stringMatching(/^its data object app\/\S+ is missing$/)],
      [cut, expect.stringMatching(/^its data object is 100 bytes, not the \d+ its manifest records$/)],
      [sound, null],
    ]);
    const human = await runCli(["list", "--repo", repo.url], { env: repo.env });
    expect(human.exitCode).toBe(0);
    const row = (id: string) => human.stdout.split("\n").find((line) => line.includes(id)) ?? "";
    expect(row(gone)).toEndWith("DAMAGED");
    expect(row(cut)).toEndWith("DAMAGED");
    expect(row(sound)).not.toContain("DAMAGED");
    expect(human.stderr).toContain(`[warn] app ${gone} cannot be restored: its data object app/`);
    expect(human.stderr).toContain(`[warn] app ${cut} cannot be restored: its data object is 100 bytes`);
  });
});

describe("files in the repository that no backup can be", () => {
  test("a planted app/x\\y.json, or a manifest-like file under a name no backup can have, is passed over: list, status, verify, prune, backup and restore work as ever", async () => {
    const repo = localRepo("e2e-bad-key");
    const [id = ""] = await backupsAt(repo, ["2026-01-01T00:00:00.000Z"]);
    writeFileSync(join(repo.url, "app", "x\\y.json"), "{}");
    // And another tool's directory, under a name no backup can have, holding what looks like a manifest.
    mkdirSync(join(repo.url, "x y"));
    writeFileSync(join(repo.url, "x y", "20261205T000000000Z-00000000.json"), "{}");
    const restored = join(repo.dir, "restored.db");
    for (const args of [
      ["list"],
      ["status", repo.db, "--max-age", "1000d"],
      ["status", "--max-age", "1000d"],
      ["verify", "--latest"],
      ["verify", "--all"],
      ["prune", "--keep-last", "5"],
      ["backup", repo.db],
      ["restore", "--name", "app", "--id", id, "-o", restored],
    ]) {
      const r = await runCli([...args, "--repo", repo.url], { env: repo.env });
      expect(r.exitCode, `${args[0]}: ${r.stderr}`).toBe(0);
      expect(r.stderr, args[0]).not.toContain("invalid storage key");
    }
    expect(inspectBank(restored).total).toBe(ACCOUNTS * INITIAL_BALANCE);
  });
});

describe("a manifest far larger than any manifest", () => {
  test("is refused as damaged (exit 4) without being read whole: a 1.5 GB planted one costs no memory", async () => {
    const repo = localRepo("e2e-huge-manifest");
    await backupsAt(repo, ["2026-01-01T00:00:00.000Z"]);
    const planted = join(repo.url, "app", "20261101T000000000Z-00000000.json");
    Bun.spawnSync(["truncate", "-s", "1500M", planted]); // sparse: no disk used
    const r = await runCli(["restore", "--name", "app", "-o", join(repo.dir, "out.db"), "--repo", repo.url], { env: repo.env });
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain(
      `manifest app/20261101T000000000Z-00000000.json is larger than 1048576 bytes, far more than a manifest holds`,
    );
    const list = await runCli(["list", "--repo", repo.url], { env: repo.env });
    expect(list.exitCode).toBe(0);
    expect(list.stderr).toContain(
      "ignoring app/20261101T000000000Z-00000000.json: manifest app/20261101T000000000Z-00000000.json is larger than",
    );
  });
});

describe("a manifest this user cannot read", () => {
  test("list, restore and verify fail on it (exit 12, the path named), never taking it for missing and using the older backup", async () => {
    const repo = localRepo("e2e-unreadable");
    const [newest = "", older = ""] = await backupsAt(repo, ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"]);
    expect(older).toStartWith("20260101");
    const manifest = join(repo.url, manifestKey("app", newest));
    // Another user's file this one may not read: as root, the CLI runs as nobody over a repository
    // others may read except that manifest; as anyone else, the manifest's mode denies its owner.
    const root = process.getuid!() === 0;
    if (root) {
      for (const dir of [repo.dir, repo.url, join(repo.url, "app")]) chmodSync(dir, 0o755);
      for (const name of readdirSync(join(repo.url, "app"))) chmodSync(join(repo.url, "app", name), 0o644);
    }
    chmodSync(manifest, 0o000);
    const out = join(repo.dir, "out");
    mkdirSync(out);
    if (root) chownSync(out, 65534, 65534);
    const as = root ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
    const env = { ...repo.env, HOME: out, TMPDIR: out };
    for (const args of [["list"], ["restore", "--name", "app", "-o", join(out, "app.db")], ["verify", "--name", "app"]]) {
      const r = await runCli([...args, "--repo", repo.url], { env, as });
      expect(r.exitCode, `${args[0]}: ${r.stderr}`).toBe(12);
      expect(r.stderr).toContain(`cannot read ${manifest}: EACCES`);
      expect(r.stdout).not.toContain(older);
    }
    expect(readdirSync(out).filter((name) => name.startsWith("app.db"))).toEqual([]);
  });
});

describe("a 'not found' that is not what was asked", () => {
  test("a wrong 404 for the newest manifest never makes restore bring back an older backup: a second look finds it, and that is exit 10", async () => {
    const repo = proxiedRepo("e2e-wrong-404");
    const [newest = ""] = await backupsAt(repo, ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"]);
    proxy.clear();
    proxy.add({ method: "GET", match: on.object(`${newest}.json`), fault: { kind: "status", status: 404, code: "NotFound" } });
    const out = join(repo.dir, "out.db");
    const r = await runCli(["restore", "--name", "app", "-o", out, "--repo", repo.url], { env: repo.env });
    expect(r.exitCode).toBe(10);
    expect(r.stderr).toContain(`reading ${manifestKey("app", newest)} answered that it does not exist, yet the storage still has it`);
    expect(existsSync(out)).toBe(false);
    const again = await runCli(["restore", "--name", "app", "-o", out, "--repo", repo.url, "--json"], { env: repo.env });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).id).toBe(newest);
  });

  test("a wrong 404 for a data object is exit 10, not a damaged backup (which --fallback would pass over)", async () => {
    const repo = proxiedRepo("e2e-wrong-404-data");
    const [newest = ""] = await backupsAt(repo, ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"]);
    proxy.clear();
    proxy.add({ method: "GET", match: on.object(".sqlite.gz"), fault: { kind: "status", status: 404, code: "NoSuchKey" } });
    const out = join(repo.dir, "out.db");
    const r = await runCli(["restore", "--name", "app", "-o", out, "--fallback", "--repo", repo.url], { env: repo.env });
    expect(r.exitCode).toBe(10);
    expect(r.stderr).toMatch(
      new RegExp(`reading app/${newest}\\.sqlite\\.gz answered that it does not exist, yet the storage still has it`),
    );
    expect(existsSync(out)).toBe(false);
  });

  test("a manifest delete answered 404 is not taken for done: prune keeps that backup's data (no listed backup without data) and says it could not remove it", async () => {
    const repo = proxiedRepo("e2e-wrong-404-delete");
    const ids = await backupsAt(repo, ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z", "2026-01-03T00:00:00.000Z"]);
    const oldest = ids[2]!;
    proxy.clear();
    proxy.add({ method: "DELETE", match: on.object(`${oldest}.json`), fault: { kind: "status", status: 404, code: "NoSuchKey" } });
    const r = await runCli(["prune", "--repo", repo.url, "--keep-last", "2", "--json"], { env: repo.env });
    expect(r.exitCode).toBe(3);
    const plan = JSON.parse(r.stdout).names[0];
    expect(plan.removed).toEqual([]);
    expect(plan.failed).toEqual([{ id: oldest, error: expect.stringContaining("is still there after its delete was answered as done") }]);
    const rows = await listed(repo);
    expect(rows.map((b) => b.id)).toEqual(ids);
    const human = await runCli(["list", "--repo", repo.url], { env: repo.env });
    expect(human.stdout).not.toContain("DAMAGED");
  });
});

describe("a listing that repeats entries", () => {
  test("prune --keep-last 3 keeps 3 (storage whose list repeats every object)", async () => {
    const repo = localRepo("e2e-dup-list");
    const ids = await backupsAt(repo, [
      "2026-01-01T00:00:00.000Z",
      "2026-01-02T00:00:00.000Z",
      "2026-01-03T00:00:00.000Z",
      "2026-01-04T00:00:00.000Z",
      "2026-01-05T00:00:00.000Z",
    ]);
    const storage = repo.storage;
    const repeating: Storage = overriding(storage, {
      list: async function* (prefix: string): AsyncGenerator<ObjectInfo> {
        for await (const object of storage.list(prefix)) {
          yield object;
          yield object;
        }
      },
    });
    const report = await runPrune(
      repeating,
      { name: "app", policy: parsePolicy({ "keep-last": "3" }), grace: parseDuration("24h"), now: new Date("2026-01-06T00:00:00Z") },
      createContext(),
    );
    expect(report.names[0]!.keep.map((k) => k.id)).toEqual(ids.slice(0, 3));
    expect(report.names[0]!.removed).toEqual(ids.slice(3));
    expect((await listed(repo)).map((b) => b.id)).toEqual(ids.slice(0, 3));
  });

  test("prune --keep-last 3 through S3 answers whose <Contents> are duplicated keeps 3, and every one restores", async () => {
    const repo = proxiedRepo("dup-s3");
    const ids = await backupsAt(repo, [
      "2026-01-01T00:00:00.000Z",
      "2026-01-02T00:00:00.000Z",
      "2026-01-03T00:00:00.000Z",
      "2026-01-04T00:00:00.000Z",
      "2026-01-05T00:00:00.000Z",
    ]);
    proxy.clear();
    proxy.add(listings.repeatingEntries());
    try {
      const r = await runCli(["prune", "--repo", repo.url, "--keep-last", "3", "--json"], {
        env: { ...repo.env, SQLITE_VAULT_NOW: "2026-01-06T00:00:00.000Z" },
      });
      expect(proxy.injected.length).toBeGreaterThan(0);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).names[0].keep.map((k: { id: string }) => k.id)).toEqual(ids.slice(0, 3));
    } finally {
      proxy.clear();
    }
    expect((await listed(repo)).map((b) => b.id)).toEqual(ids.slice(0, 3));
    const verify = await runCli(["verify", "--all", "--repo", repo.url, "--json"], { env: repo.env });
    expect(verify.exitCode, verify.stderr).toBe(0);
  });
});

describe("a manifest stored whose answer was lost", () => {
  test("the backup fails, and leaves no listed backup without data: restore --if-missing starts fresh, nothing is left behind", async () => {
    const repo = proxiedRepo("lost-manifest");
    createBankDb(repo.db, { fillerRows: 20 });
    proxy.clear();
    proxy.add({ method: "PUT", match: on.object(".json"), times: 1000, fault: { kind: "drop-response" } });
    let backup: Awaited<ReturnType<typeof runCli>>;
    try {
      backup = await runCli(["backup", repo.db, "--repo", repo.url, "--timeout", "2s", "--retries", "1"], { env: repo.env });
      expect(proxy.injected.length).toBeGreaterThan(0);
    } finally {
      proxy.clear();
    }
    expect(backup.exitCode).toBe(10);
    expect(await listed(repo)).toEqual([]);
    const target = join(repo.dir, "fresh.db");
    const start = await runCli(["restore", "--name", "app", "-o", target, "--if-missing", "--repo", repo.url], { env: repo.env });
    expect(start.exitCode, start.stderr).toBe(0);
    expect(start.stderr).toContain("no backups of app");
    expect(await keys(repo.storage)).toEqual([]); // the manifest went first, then the data
  });

  test("when the manifest cannot be removed either, its data object stays: the backup that may be listed restores", async () => {
    const repo = localRepo("e2e-lost-manifest-undeletable");
    createBankDb(repo.db, { fillerRows: 20 });
    const storage = repo.storage;
    const lossy: Storage = overriding(storage, {
      // The manifest is stored, but its answer is lost; so is the answer to deleting it.
      put: async (key: string, body: Uint8Array | ReadableStream<Uint8Array>, options?: PutOptions) => {
        const result = await storage.put(key, body, options);
        if (key.endsWith(".json")) throw new Error("connection reset");
        return result;
      },
      delete: async (keys: string[]) => {
        if (keys.some((k) => k.endsWith(".json"))) throw new Error("connection reset");
        return storage.delete(keys);
      },
    });
    await expect(runBackup(lossy, { databasePath: repo.db, compression: "gzip", tmpDir: repo.dir }, createContext())).rejects.toThrow(
      "connection reset",
    );
    const [only] = await listed(repo);
    expect(only).toBeDefined();
    const out = join(repo.dir, "restored.db");
    const r = await runCli(["restore", "--name", "app", "--id", only!.id, "-o", out, "--repo", repo.url], { env: repo.env });
    expect(r.exitCode, r.stderr).toBe(0);
  });

  test("a failure after the manifest is stored (the data check's request fails) takes the manifest back before the data", async () => {
    const repo = localRepo("e2e-after-commit");
    createBankDb(repo.db, { fillerRows: 20 });
    const storage = repo.storage;
    const deletes: string[] = [];
    let stats = 0;
    const failing: Storage = overriding(storage, {
      // The data check's request fails; the look that confirms the manifest's delete is answered.
      stat: async (key) => {
        if (stats++ === 0) throw new Error("connection reset");
        return storage.stat(key);
      },
      delete: async (keys: string[]) => {
        deletes.push(...keys);
        return storage.delete(keys);
      },
    });
    await expect(runBackup(failing, { databasePath: repo.db, compression: "gzip", tmpDir: repo.dir }, createContext())).rejects.toThrow(
      "connection reset",
    );
    expect(await listed(repo)).toEqual([]);
    expect(deletes.findIndex((k) => k.endsWith(".json"))).toBe(0);
    expect(deletes.some((k) => k.endsWith(".sqlite.gz"))).toBe(true);
    expect(await keys(storage)).toEqual([]);
  });

  test("the check after the commit that no other file took the name meanwhile, when it gets no answer, keeps the stored backup and says so: never taken back for a storage error", async () => {
    const repo = localRepo("e2e-source-check-fails");
    const [previous = ""] = await backupsAt(repo, ["2026-01-01T00:00:00.000Z"]);
    const storage = repo.storage;
    let committed = false;
    const failing: Storage = overriding(storage, {
      put: async (key: string, body: Uint8Array | ReadableStream<Uint8Array>, options?: PutOptions) => {
        const result = await storage.put(key, body, options);
        if (key.endsWith(".json")) committed = true;
        return result;
      },
      get: async (key, options) => {
        if (committed) throw new StorageUnavailableError("cannot reach the storage");
        return storage.get(key, options);
      },
    });
    const warnings: string[] = [];
    const log = { ...silentLogger, warn: (message: unknown) => warnings.push(String(message)) } as unknown as Logger;
    const result = await runBackup(failing, { databasePath: repo.db, compression: "gzip", tmpDir: repo.dir }, createContext({ log }));
    expect((await listed(repo)).map((b) => b.id)).toEqual([result.id, previous]); // kept
    expect(warnings).toEqual([
      `backup ${result.id} of app is stored; whether another file's backups took the name meanwhile was not checked: cannot reach the storage`,
    ]);
  });
});
