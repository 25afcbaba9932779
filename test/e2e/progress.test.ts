/**
 * Progress where a person is watching: through a real pseudo-terminal (script(1)), backup, restore
 * and verify draw frames in place on stderr and leave none behind; through a pipe, with --json and
 * with -q, nothing of it is written.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { join } from "node:path";
import { ensureBinary, runCli } from "../helpers/cli.ts";
import { createBankDb } from "../helpers/db.ts";
import { localRepo, s3Repo } from "../helpers/repos.ts";
import { useTestBucket } from "../helpers/s3.ts";
import { flipByte, readBackupManifest } from "../helpers/tamper.ts";
import { on, startFaultProxy } from "../helpers/fault-proxy.ts";
import { testS3 } from "../helpers/s3.ts";

setDefaultTimeout(120_000);

const CLEAR = "\r\u001b[2K";

const bucket = useTestBucket("progress");

/** The binary with stdin, stdout and stderr on one pseudo-terminal; everything it wrote, raw. */
async function runInTerminal(args: string[], env: Record<string, string> = {}): Promise<{ exitCode: number; raw: string }> {
  const command = [ensureBinary(), ...args].map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, NODE_ENV: "production", COLUMNS: "120", ...env }))
    if (v !== undefined) merged[k] = v;
  const proc = Bun.spawn(["script", "-qfec", command, "/dev/null"], { env: merged, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [raw, exitCode] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  return { exitCode, raw };
}

/**
 * The lines left on the screen once `raw` is drawn: "\r" returns to the line's start, ESC[2K clears
 * the line, other escape sequences (colours) draw nothing.
 */
function screen(raw: string): string[] {
  const lines: string[] = [];
  let line = "";
  let col = 0;
  for (const token of raw.match(/\u001b\[[0-9;?]*[A-Za-z]|\r|\n|[^\u001b\r\n]+/g) ?? []) {
    if (token === "\u001b[2K") line = "";
    else if (token.startsWith("\u001b")) continue;
    else if (token === "\r") col = 0;
    else if (token === "\n") {
      lines.push(line.trimEnd());
      line = "";
      col = 0;
    } else {
      line = line.slice(0, col).padEnd(col) + token + line.slice(col + token.length);
      col += token.length;
    }
  }
  if (line.trim()) lines.push(line.trimEnd());
  return lines;
}

/** The frames drawn: each text that followed a "\r ESC[2K". */
function frames(raw: string): string[] {
  return raw
    .split(CLEAR)
    .slice(1)
    .map((f) => f.split(/[\r\n]/)[0]!)
    .filter(Boolean);
}

const PROGRESS = /(backing up|storing|copying a snapshot|downloading|checking|verifying) .*(%|… \d+\.\d s)/;

describe("progress on a terminal", () => {
  test("backup and restore draw their phases in place (bytes of total, percent) and leave a clean screen", async () => {
    const repo = s3Repo(bucket.bucket, "tty");
    createBankDb(repo.db, { fillerRows: 20_000 });
    const backup = await runInTerminal(["backup", repo.db, "--repo", repo.url], repo.env);
    expect(backup.exitCode).toBe(0);
    const drawn = frames(backup.raw);
    expect(drawn.some((f) => /^backing up app: [\d.]+ [KMG]?i?B of [\d.]+ MiB \(\d+%\)/.test(f))).toBe(true);
    const shown = screen(backup.raw);
    expect(shown.filter((l) => PROGRESS.test(l))).toEqual([]);
    expect(shown.at(-1)).toStartWith("backed up app ");

    const target = join(repo.dir, "restored.db");
    const restore = await runInTerminal(["restore", "--name", "app", "-o", target, "--repo", repo.url], repo.env);
    expect(restore.exitCode).toBe(0);
    expect(frames(restore.raw).some((f) => /^downloading app: [\d.]+ [KMG]?i?B of [\d.]+ MiB \(\d+%\)/.test(f))).toBe(true);
    const after = screen(restore.raw);
    expect(after.filter((l) => PROGRESS.test(l))).toEqual([]);
    expect(after.at(-1)).toStartWith("restored app ");
  });

  test("verify draws its count in place and leaves no progress line behind", async () => {
    const repo = localRepo("tty-verify");
    createBankDb(repo.db, { fillerRows: 2_000 });
    expect((await runCli(["backup", repo.db, "--repo", repo.url, "-q"])).exitCode).toBe(0);
    const r = await runInTerminal(["verify", "--repo", repo.url]);
    expect(r.exitCode).toBe(0);
    // The screen first: a count once written with "\r" and ended with "\n" stayed on it.
    const shown = screen(r.raw);
    expect(shown.filter((l) => /verifying \d/.test(l))).toEqual([]);
    expect(frames(r.raw).some((f) => /^verifying 0\/1 backup\(s\): .* \(\d+%\)/.test(f))).toBe(true);
    expect(shown.at(-1)).toBe("1 passed, 0 failed (integrity_check)");
  });

  test("a failure ends on a clean error line: no frame is left in front of it or on it", async () => {
    const repo = localRepo("tty-fail");
    createBankDb(repo.db, { fillerRows: 2_000 });
    const made = await runCli(["backup", repo.db, "--repo", repo.url, "--json"]);
    await flipByte(repo.storage, await readBackupManifest(repo.storage, "app", JSON.parse(made.stdout).id));
    const r = await runInTerminal(["restore", "--name", "app", "-o", join(repo.dir, "restored.db"), "--repo", repo.url]);
    expect(r.exitCode).toBe(4);
    expect(frames(r.raw).some((f) => f.startsWith("downloading app: "))).toBe(true);
    const shown = screen(r.raw);
    expect(shown.filter((l) => PROGRESS.test(l))).toEqual([]);
    expect(shown.at(-2)).toStartWith("sqlite-vault: backup ");
    expect(shown.at(-1)).toStartWith("Try: ");
  });

  test("Ctrl-C in the middle of a backup: the frame is cleared and the last line is the interruption, whole", async () => {
    const proxy = await startFaultProxy(testS3().endpoint);
    try {
      const repo = s3Repo(bucket.bucket, "tty-int");
      const url = `${repo.url.split("?")[0]}?endpoint=${encodeURIComponent(proxy.url)}`;
      // Every part upload is held, so the backup is still drawing its frames when the key is pressed.
      proxy.add({ method: "PUT", match: on.partUpload, fault: { kind: "delay", delayMs: 10_000 }, times: Infinity });
      createBankDb(repo.db, { fillerRows: 20_000 });
      const command = [ensureBinary(), "backup", repo.db, "--repo", url].map((a) => `'${a}'`).join(" ");
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries({ ...process.env, NODE_ENV: "production", ...repo.env })) if (v !== undefined) env[k] = v;
      const proc = Bun.spawn(["script", "-qfec", command, "/dev/null"], { env, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
      const reader = proc.stdout.getReader();
      const decoder = new TextDecoder();
      let raw = "";
      let pressed = false;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        raw += decoder.decode(value, { stream: true });
        if (!pressed && raw.includes("backing up app: ")) {
          pressed = true;
          proc.stdin.write("\u0003"); // the terminal's interrupt key: SIGINT to the binary
          proc.stdin.flush();
        }
      }
      expect(await proc.exited).toBe(130);
      expect(pressed).toBe(true);
      const shown = screen(raw);
      expect(shown.filter((l) => PROGRESS.test(l))).toEqual([]);
      expect(shown.at(-1)).toBe("sqlite-vault: interrupted by SIGINT; nothing was left half-written");
    } finally {
      await proxy.stop();
    }
  });

  test("diagnostics: consola's badge and colour on a terminal, plain [info] lines through a pipe", async () => {
    // The fancy reporter is loaded only for a terminal (src/logger.ts): this fails if that load breaks in the binary.
    const repo = localRepo("diagnostics");
    createBankDb(repo.db, { fillerRows: 200 });
    const target = join(repo.dir, "restored.db");
    const args = ["restore", "--name", "app", "-o", target, "--force", "--repo", repo.url];
    expect((await runCli(["backup", repo.db, "--repo", repo.url])).exitCode).toBe(0);

    const tty = await runInTerminal(args);
    expect(tty.exitCode).toBe(0);
    expect(tty.raw).toMatch(/\u001b\[\d+m\u2139\u001b\[\d+m restoring app /);
    expect(tty.raw).not.toContain("[info]");

    const piped = await runCli(args);
    expect(piped.exitCode).toBe(0);
    expect(piped.stderr).toMatch(/^\[info\] restoring app /m);
    expect(piped.stderr).not.toContain("\u2139");
  });

  test("--verbose says where a restore's time went: each part of the streamed phase, and when each check ended", async () => {
    // scripts/bench-restore.ts reads these lines into bench/results.md's table of phases.
    const repo = localRepo("phases");
    createBankDb(repo.db, { fillerRows: 5000 });
    expect((await runCli(["backup", repo.db, "--repo", repo.url, "--compression", "zstd"])).exitCode).toBe(0);
    const target = join(repo.dir, "restored.db");
    const restore = await runCli(["restore", "--name", "app", "-o", target, "--repo", repo.url, "--verbose"]);
    expect(restore.exitCode).toBe(0);
    const streamed =
      /downloaded and decompressed \S+ in ([\d.]+) s \(the last stored byte at ([\d.]+) s; decompressing ([\d.]+) s and writing ([\d.]+) s, summed over their calls\)/.exec(
        restore.stderr,
      );
    expect(streamed).not.toBeNull();
    const [phase, lastByte] = streamed!.slice(1, 3).map(Number) as [number, number];
    expect(lastByte).toBeLessThanOrEqual(phase + 0.01);
    const checked =
      /SHA-256, integrity_check and fsync of \S+ in ([\d.]+) s, at once \(SHA-256 done at ([\d.]+) s, integrity_check at ([\d.]+) s, fsync at ([\d.]+) s\)/.exec(
        restore.stderr,
      );
    expect(checked).not.toBeNull();
    const [check, ...ends] = checked!.slice(1).map(Number) as number[];
    for (const end of ends) expect(end).toBeLessThanOrEqual(check! + 0.01);

    // verify checks the same way and keeps no file: no fsync.
    const verify = await runCli(["verify", "--name", "app", "--repo", repo.url, "--verbose"]);
    expect(verify.exitCode).toBe(0);
    expect(verify.stderr).toMatch(/the last stored byte at [\d.]+ s; decompressing [\d.]+ s and writing [\d.]+ s/);
    expect(verify.stderr).toMatch(
      /SHA-256, integrity_check of \S+ in [\d.]+ s, at once \(SHA-256 done at [\d.]+ s, integrity_check at [\d.]+ s\)/,
    );
  });

  test("--json and -q on a terminal, and any run through a pipe, write no progress at all", async () => {
    const repo = localRepo("no-tty");
    createBankDb(repo.db, { fillerRows: 2_000 });
    const target = join(repo.dir, "restored.db");

    const json = await runInTerminal(["backup", repo.db, "--repo", repo.url, "--json"]);
    expect(json.exitCode).toBe(0);
    expect(json.raw).not.toContain("\u001b");
    expect(json.raw).not.toMatch(/\r(?!\n)/);
    expect(JSON.parse(json.raw).name).toBe("app");

    for (const args of [["backup", repo.db], ["restore", "--name", "app", "-o", target, "--force"], ["verify"]]) {
      const quiet = await runInTerminal([...args, "--repo", repo.url, "-q"]);
      expect(quiet.exitCode).toBe(0);
      expect(quiet.raw).toBe("");

      const piped = await runCli([...args, "--repo", repo.url]);
      expect(piped.exitCode).toBe(0);
      expect(piped.stderr).not.toContain("\r");
      expect(piped.stderr).not.toContain("\u001b");
      expect(piped.stderr).not.toMatch(PROGRESS);
    }
  });
});
