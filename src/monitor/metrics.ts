/**
 * Prometheus metrics for backups and restores, per database: duration histograms, the last success
 * time, the last backup size, success and failure counters. Served by `cron --listen` at /metrics,
 * and written by one-shot runs to a node_exporter textfile (--metrics-file), atomically.
 */
import { statSync } from "node:fs";
import { dirname } from "node:path";
import { writeFileAtomically } from "../local/atomic-file.ts";
import { canWrite, resolveForWrite } from "../local/safe-path.ts";
import { UsageError } from "../errors.ts";

const BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

interface Histogram {
  counts: number[];
  sum: number;
  count: number;
}

interface DatabaseMetrics {
  backup: Histogram;
  restore: Histogram;
  lastSuccess?: number;
  lastBackupBytes?: number;
  successes: number;
  failures: number;
}

export class Metrics {
  private readonly databases = new Map<string, DatabaseMetrics>();

  private of(name: string): DatabaseMetrics {
    let m = this.databases.get(name);
    if (!m) {
      m = { backup: emptyHistogram(), restore: emptyHistogram(), successes: 0, failures: 0 };
      this.databases.set(name, m);
    }
    return m;
  }

  /** Make a database appear (with zero counts) before its first run. */
  declare(name: string): void {
    this.of(name);
  }

  backupSucceeded(name: string, seconds: number, storedBytes: number, at = Date.now()): void {
    const m = this.of(name);
    observe(m.backup, seconds);
    m.successes++;
    m.lastSuccess = at / 1000;
    m.lastBackupBytes = storedBytes;
  }

  backupFailed(name: string, seconds: number): void {
    const m = this.of(name);
    observe(m.backup, seconds);
    m.failures++;
  }

  restored(name: string, seconds: number): void {
    observe(this.of(name).restore, seconds);
  }

  /** The Prometheus text exposition format. */
  render(): string {
    const lines: string[] = [];
    const names = [...this.databases.keys()].sort();
    const family = (metric: string, type: string, help: string, body: (name: string, m: DatabaseMetrics) => string[]) => {
      lines.push(`# HELP ${metric} ${help}`, `# TYPE ${metric} ${type}`);
      for (const name of names) lines.push(...body(name, this.databases.get(name)!));
    };
    family("sqlite_vault_backup_duration_seconds", "histogram", "Time taken by backups.", (n, m) =>
      histogramLines("sqlite_vault_backup_duration_seconds", n, m.backup),
    );
    family("sqlite_vault_restore_duration_seconds", "histogram", "Time taken by restores.", (n, m) =>
      histogramLines("sqlite_vault_restore_duration_seconds", n, m.restore),
    );
    family("sqlite_vault_last_success_timestamp_seconds", "gauge", "Unix time of the last successful backup.", (n, m) =>
      m.lastSuccess === undefined ? [] : [`sqlite_vault_last_success_timestamp_seconds{database="${label(n)}"} ${m.lastSuccess}`],
    );
    family("sqlite_vault_last_backup_size_bytes", "gauge", "Stored size of the last successful backup.", (n, m) =>
      m.lastBackupBytes === undefined ? [] : [`sqlite_vault_last_backup_size_bytes{database="${label(n)}"} ${m.lastBackupBytes}`],
    );
    family("sqlite_vault_backups_total", "counter", "Backups attempted, by result.", (n, m) => [
      `sqlite_vault_backups_total{database="${label(n)}",result="success"} ${m.successes}`,
      `sqlite_vault_backups_total{database="${label(n)}",result="failure"} ${m.failures}`,
    ]);
    return `${lines.join("\n")}\n`;
  }

  /** Write render() to `path` atomically (temp file + rename), as node_exporter's textfile collector wants. */
  writeFile(givenPath: string): void {
    writeFileAtomically(resolveForWrite(givenPath), this.render(), { mode: 0o644, replace: true });
  }
}

function emptyHistogram(): Histogram {
  return { counts: BUCKETS.map(() => 0), sum: 0, count: 0 };
}

function observe(h: Histogram, seconds: number): void {
  h.sum += seconds;
  h.count++;
  BUCKETS.forEach((le, i) => {
    if (seconds <= le) h.counts[i]!++;
  });
}

function histogramLines(metric: string, name: string, h: Histogram): string[] {
  const db = `database="${label(name)}"`;
  return [
    ...BUCKETS.map((le, i) => `${metric}_bucket{${db},le="${le}"} ${h.counts[i]}`),
    `${metric}_bucket{${db},le="+Inf"} ${h.count}`,
    `${metric}_sum{${db}} ${h.sum}`,
    `${metric}_count{${db}} ${h.count}`,
  ];
}

function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/**
 * Throws UsageError when a metrics file cannot be written at `givenPath` (no such directory, one this
 * user may not write, or a directory at the path itself): checked before the run, so that a backup is
 * never stored and then reported as a failure for its metrics.
 */
export function assertMetricsPath(givenPath: string): void {
  const path = resolveForWrite(givenPath);
  const dir = dirname(path);
  const problem = !statSync(dir, { throwIfNoEntry: false })?.isDirectory()
    ? `${dir} is not a directory`
    : statSync(path, { throwIfNoEntry: false })?.isDirectory()
      ? `${path} is a directory`
      : canWrite(dir)
        ? undefined
        : `${dir} is not writable by this user`;
  if (problem) throw new UsageError(`--metrics-file ${givenPath}: ${problem}`, "name a file in a directory this user can write");
}
