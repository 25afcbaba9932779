/**
 * Who this binary is. A compiled binary has its version, git commit, build date and target baked in
 * by scripts/build.ts (--define SQLITE_VAULT_BUILD); run from source, they come from package.json.
 */
import pkg from "../package.json" with { type: "json" };

interface BuildInfo {
  version: string;
  commit: string;
  date: string;
  target: string;
}

declare const SQLITE_VAULT_BUILD: BuildInfo | undefined;

export const BUILD: BuildInfo =
  typeof SQLITE_VAULT_BUILD !== "undefined" && SQLITE_VAULT_BUILD
    ? SQLITE_VAULT_BUILD
    : { version: pkg.version, commit: "source", date: "", target: `${process.platform === "darwin" ? "darwin" : "linux"}-${process.arch}` };

/** The tool version recorded in every manifest and printed by --version. */
export const VERSION: string = BUILD.version;

/**
 * SQLite before 3.51.3 can corrupt a WAL database when the WAL is reset while a reader is active
 * (fixed in 3.51.3). Bun bundles a recent SQLite on Linux but uses the system's on macOS.
 */
export const WAL_RESET_FIX = "3.51.3";

/** Compare dotted versions: negative when a < b. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The warning backup gives for a WAL database on an SQLite without the WAL-reset fix, or null. */
export function walResetWarning(sqliteVersion: string, journalMode: string): string | null {
  if (journalMode !== "wal" || compareVersions(sqliteVersion, WAL_RESET_FIX) >= 0) return null;
  return `SQLite ${sqliteVersion} is older than ${WAL_RESET_FIX}, which fixes a WAL-reset bug that can corrupt WAL databases; upgrade the system SQLite`;
}
