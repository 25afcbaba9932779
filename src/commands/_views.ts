/** Human views shared by more than one command. */
import { formatBytes, formatDuration, formatRatio, formatTable, formatTime } from "../output.ts";
import type { BackupResult } from "../ops/backup.ts";
import type { JobOutcome } from "../ops/backup-job.ts";
import type { PruneReport } from "../ops/prune.ts";
import type { RestoreResult } from "../ops/restore.ts";
import type { VerifyReport } from "../ops/verify.ts";

/** A prune over every target; a configured database that could not be pruned at all is named in `failedDatabases`. */
export type PruneOutput = PruneReport & { failedDatabases?: { name: string; message: string }[] };

/**
 * A prune's human view: one summary line per name (kept, removed, freed) and every failure; the
 * whole plan, backup by backup, with `detail` (--verbose) or in a dry run.
 */
export function renderPrune(r: PruneOutput, view: { verbose: boolean }): string {
  const detail = view.verbose || r.dryRun;
  const lines: string[] = [];
  const h = r.housekeeping;
  for (const n of r.names) {
    if (detail) lines.push(`${n.name}: keep ${n.keep.length}, ${r.dryRun ? "would remove" : "remove"} ${n.remove.length} (${r.policy})`);
    else {
      const freed = n.remove.filter((b) => n.removed.includes(b.id)).reduce((sum, b) => sum + b.bytes, 0);
      const left = n.damaged.length + n.futureDated.length;
      lines.push(
        `pruned ${n.name}: kept ${n.keep.length}, removed ${n.removed.length}, freed ${formatBytes(freed)}${left ? `; ${left} left alone (see --verbose)` : ""}`,
      );
    }
    const rows = [
      ...n.keep.map((k) => [k.id, formatTime(k.createdAt), "keep", k.reasons.join(", ")]),
      ...n.remove.map((b) => [
        b.id,
        formatTime(b.createdAt),
        r.dryRun ? "would remove" : n.removed.includes(b.id) ? "removed" : "FAILED",
        "",
      ]),
      ...n.damaged.map((d) => [d.id, formatTime(d.createdAt), "left alone", "not counted: cannot be restored"]),
      ...n.futureDated.map((f) => [f.id, formatTime(f.createdAt), "left alone", "not counted: dated in the future"]),
    ].sort((a, b) => (a[0]! < b[0]! ? 1 : -1));
    if (detail && rows.length) lines.push(formatTable(["ID", "TIME (UTC)", "ACTION", "KEPT BY"], rows));
    for (const f of n.failed) lines.push(`could not remove ${n.name} ${f.id}: ${f.error}; it remains listed and restorable`);
  }
  const verb = r.dryRun ? "would remove" : "removed";
  if (detail) {
    for (const key of h.removed) lines.push(`${verb} leftover ${key}`);
    for (const key of h.aborted) lines.push(`${r.dryRun ? "would abort" : "aborted"} abandoned upload ${key}`);
    if (h.young.length) lines.push(`left ${h.young.length} leftover(s) younger than the grace period alone`);
  } else if (h.removed.length || h.aborted.length)
    lines.push(`removed ${h.removed.length} leftover(s) of interrupted runs, aborted ${h.aborted.length} abandoned upload(s)`);
  for (const f of h.failed) lines.push(`could not remove leftover ${f.key}: ${f.error}`);
  for (const f of r.failedDatabases ?? []) lines.push(`could not prune ${f.name}: ${f.message}`);
  if (r.names.length === 0 && !r.failedDatabases) lines.push(`no backups in ${r.repo}`);
  return lines.join("\n");
}

/** The report over every target; a configured database that could not be verified at all is named in `failedDatabases`. */
export type VerifyOutput = VerifyReport & { failedDatabases?: { name: string; message: string; exitCode: number }[] };

/** verify's human view: a table of results, each failure, each database not verified, orphans, a summary line. */
export function renderVerify(r: VerifyOutput): string {
  const table = formatTable(
    ["NAME", "ID", "TIME (UTC)", "RESULT", "FAILED STEP", "SECONDS"],
    r.results.map((e) => [
      e.name,
      e.id,
      e.createdAt ? formatTime(e.createdAt) : "-",
      e.result === "fail" ? "FAILED" : e.checked === "stored-bytes" ? "ok (stored bytes only)" : "ok",
      e.step ?? "-",
      e.seconds.toFixed(2),
    ]),
  );
  const failures = r.results
    .filter((e) => e.result === "fail")
    .map((e) => `FAILED ${e.name} ${e.id}: ${e.step ? `${e.step}: ` : ""}${e.message}`);
  // Each orphan was named on stderr as a warning; the report only counts them.
  const orphans = r.orphans.length
    ? [`${r.orphans.length} data object(s) without a manifest (interrupted uploads, not backups; prune removes them)`]
    : [];
  const bytesOnly = r.results.filter((e) => e.result === "pass" && e.checked === "stored-bytes").length;
  const summary = `${r.passed} passed, ${r.failed} failed (${r.check}${bytesOnly ? `; ${bytesOnly} of them encrypted and checked by their stored bytes only, for want of a key` : ""})`;
  const unverified = (r.failedDatabases ?? []).map((f) => `could not verify ${f.name}: ${f.message}`);
  return [table, ...failures, ...unverified, ...orphans, summary].join("\n");
}

/** One configured database's restore, in a run over several. */
export interface RestoreOutcome {
  name: string;
  ok: boolean;
  result?: RestoreResult;
  error?: { message: string; exitCode: number };
}

/** One restore's human view: what was skipped, what was restored where, and where the old file was kept. */
export function renderRestore(r: RestoreResult): string {
  if (r.action === "skipped")
    return r.reason === "target-exists" ? `${r.target} exists; nothing restored` : `no backups of ${r.name} in ${r.repo}; nothing restored`;
  const aside = r.replaced.length ? `; the previous file was kept as ${r.replaced[0]}` : "";
  const skipped = r.skipped.map((s) => `skipped ${r.name} ${s.id} (${s.createdAt}): failed step ${s.step}: ${s.reason}\n`).join("");
  return `${skipped}restored ${r.name} ${r.id} (${r.createdAt}) to ${r.target}: ${formatBytes(r.databaseBytes)}, ${r.check} ok, in ${formatDuration(r.durationMs)}${aside}`;
}

export function renderBackup(b: BackupResult, view: { verbose: boolean }, prune?: JobOutcome["prune"]): string {
  const line = `backed up ${b.name} ${b.id}: ${formatBytes(b.databaseBytes)} -> ${formatBytes(b.storedBytes)} (${formatRatio(b.ratio)}, ${b.compression}${b.encrypted ? ", encrypted" : ""}) in ${formatDuration(b.durationMs)} to ${b.repo}`;
  return prune ? `${line}\n${renderPrune(prune, view)}` : line;
}

/** The backups of a config file's databases, each job's outcome, then the names that failed. */
export function renderBackups(results: JobOutcome[], failed: string[], view: { verbose: boolean }): string {
  const lines = results.map((o) => (o.ok ? renderBackup(o.backup!, view, o.prune) : `FAILED ${o.name}: ${o.error!.message}`));
  if (failed.length) lines.push(`failed: ${failed.join(", ")}`);
  return lines.join("\n");
}
