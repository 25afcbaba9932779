/**
 * bench-common.ts — the process and measuring helpers that scripts/bench.ts and scripts/bench-restore.ts share.
 * Not part of the test suite.
 */
import type { S3Client } from "@bradenmacdonald/s3-lite-client";
import { readdirSync, readFileSync, rmSync } from "node:fs";

export const MiB = 1024 * 1024;

export function sh(
  cmd: string[],
  opts: { env?: Record<string, string | undefined>; allowFail?: boolean; cwd?: string } = {},
): { code: number; stdout: string; stderr: string } {
  const p = Bun.spawnSync(cmd, { env: opts.env ?? process.env, cwd: opts.cwd, stdout: "pipe", stderr: "pipe" });
  const r = { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
  if (r.code !== 0 && !opts.allowFail) throw new Error(`${cmd.join(" ")} exited ${r.code}\n${r.stderr.trim()}`);
  return r;
}

export const have = (cmd: string[]) => {
  try {
    return sh(cmd, { allowFail: true }).code === 0;
  } catch {
    return false; // not on PATH
  }
};

/** Single-quote for bash. */
export const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** A bash script that stops at the first failure, pipelines included. */
export const bash = (script: string) => ["bash", "-c", `set -euo pipefail\n${script}`];

export interface Sample {
  seconds: number;
  rssKiB: number;
  /** CPU seconds of the process and all its children (threads included), from /usr/bin/time -v. */
  userSeconds: number;
  sysSeconds: number;
  stdout: string;
  /**
   * Peak private memory (RssAnon) of the largest single process, sampled every 20 ms (measureLogged
   * only). Unlike the peak RSS, it leaves out pages of files mapped into the process (the binary, and a
   * database read through a map), which are page cache the kernel reclaims at will.
   */
  anonPeakKiB?: number;
  /** stderr lines with the time they arrived, in seconds after the start (measureLogged only). */
  lines?: { at: number; text: string }[];
}

function timeReport(timeFile: string): { rssKiB: number; userSeconds: number; sysSeconds: number } {
  const report = readFileSync(timeFile, "utf8");
  const field = (name: string) => {
    const m = new RegExp(`${name.replace(/[()]/g, "\\$&")}: ([\\d.]+)`).exec(report);
    if (!m) throw new Error(`no "${name}" in /usr/bin/time output:\n${report}`);
    return Number(m[1]);
  };
  return {
    rssKiB: field("Maximum resident set size (kbytes)"),
    userSeconds: field("User time (seconds)"),
    sysSeconds: field("System time (seconds)"),
  };
}

/** Runs cmd under /usr/bin/time -v: wall seconds around it, peak RSS and CPU from time's report. */
export function measure(cmd: string[], env: Record<string, string | undefined>, timeFile: string): Sample {
  rmSync(timeFile, { force: true });
  const t0 = performance.now();
  const p = Bun.spawnSync(["/usr/bin/time", "-v", "-o", timeFile, ...cmd], { env, stdout: "pipe", stderr: "pipe" });
  const seconds = (performance.now() - t0) / 1000;
  if (p.exitCode !== 0)
    throw new Error(`command failed (exit ${p.exitCode}): ${cmd.join(" ")}\n${p.stderr.toString().trim()}\n${p.stdout.toString().trim()}`);
  return { seconds, ...timeReport(timeFile), stdout: p.stdout.toString() };
}

/**
 * As measure, and each stderr line is stamped with the time it arrived (the binary's --verbose lines
 * mark the end of its phases). Reading the pipe as it fills costs the child nothing.
 */
export async function measureLogged(cmd: string[], env: Record<string, string | undefined>, timeFile: string): Promise<Sample> {
  rmSync(timeFile, { force: true });
  const t0 = performance.now();
  const p = Bun.spawn(["/usr/bin/time", "-v", "-o", timeFile, ...cmd], { env, stdout: "pipe", stderr: "pipe" });
  const lines: { at: number; text: string }[] = [];
  const readErr = (async () => {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of p.stderr) {
      const at = (performance.now() - t0) / 1000;
      pending += decoder.decode(chunk, { stream: true });
      const parts = pending.split("\n");
      pending = parts.pop()!;
      for (const text of parts) lines.push({ at, text });
    }
    if (pending) lines.push({ at: (performance.now() - t0) / 1000, text: pending });
  })();
  const stdout = new Response(p.stdout).text();
  const anonPeak = new Map<number, number>();
  const sampler = setInterval(() => sampleAnon(p.pid, anonPeak), 20);
  const code = await p.exited;
  clearInterval(sampler);
  const seconds = (performance.now() - t0) / 1000;
  await readErr;
  if (code !== 0)
    throw new Error(`command failed (exit ${code}): ${cmd.join(" ")}\n${lines.map((l) => l.text).join("\n")}\n${(await stdout).trim()}`);
  return { seconds, ...timeReport(timeFile), stdout: await stdout, lines, anonPeakKiB: Math.max(0, ...anonPeak.values()) };
}

/** Each descendant of `pid` (not `pid` itself: /usr/bin/time) with its RssAnon, kept at its peak in `peaks`. */
function sampleAnon(pid: number, peaks: Map<number, number>): void {
  const children = (of: number): number[] => {
    try {
      return readdirSync(`/proc/${of}/task`).flatMap((tid) =>
        readFileSync(`/proc/${of}/task/${tid}/children`, "utf8").split(" ").filter(Boolean).map(Number),
      );
    } catch {
      return []; // gone meanwhile
    }
  };
  const pending = children(pid);
  while (pending.length) {
    const child = pending.pop()!;
    try {
      const kib = Number(/^RssAnon:\s+(\d+)/m.exec(readFileSync(`/proc/${child}/status`, "utf8"))?.[1] ?? 0);
      peaks.set(child, Math.max(peaks.get(child) ?? 0, kib));
    } catch {}
    pending.push(...children(child));
  }
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export async function emptyBucket(client: S3Client, bucket: string, prefix?: string): Promise<void> {
  const keys: string[] = [];
  for await (const o of client.listObjects({ bucketName: bucket, prefix })) keys.push(o.key);
  for (const k of keys) await client.deleteObject(k, { bucketName: bucket });
}

/** "10M", "500M", "1G" (MiB and GiB) → MiB. */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(M|MiB|MB|G|GiB|GB)?$/i.exec(s.trim());
  if (!m) throw new Error(`bad size ${s} (use e.g. 10M, 500M, 1G)`);
  const n = Number(m[1]) * (/^g/i.test(m[2] ?? "M") ? 1024 : 1);
  if (!Number.isInteger(n) || n < 1) throw new Error(`bad size ${s}: a whole number of MiB, at least 1`);
  return n;
}

export const sizeLabel = (sizeMiB: number) => (sizeMiB >= 1024 && sizeMiB % 1024 === 0 ? `${sizeMiB / 1024} GiB` : `${sizeMiB} MiB`);
