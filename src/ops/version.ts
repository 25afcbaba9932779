/** version: who this binary is, and which SQLite it runs with (the SQLite library is asked, not assumed). */
import { Database } from "bun:sqlite";
import { BUILD, compareVersions, WAL_RESET_FIX } from "../version.ts";

export interface VersionInfo {
  version: string;
  commit: string;
  buildDate: string;
  target: string;
  bun: string;
  sqlite: { version: string; source: "bundled" | "system"; walResetFix: boolean };
}

/** The build and the SQLite library in use. Opens an in-memory database to ask SQLite its version. */
export function readVersionInfo(): VersionInfo {
  const db = new Database(":memory:");
  const sqlite = (db.query("SELECT sqlite_version() AS v").get() as { v: string }).v;
  db.close();
  return {
    version: BUILD.version,
    commit: BUILD.commit,
    buildDate: BUILD.date,
    target: BUILD.target,
    bun: Bun.version,
    // Bun links its own SQLite on Linux; on macOS it uses the system library.
    sqlite: {
      version: sqlite,
      source: process.platform === "darwin" ? "system" : "bundled",
      walResetFix: compareVersions(sqlite, WAL_RESET_FIX) >= 0,
    },
  };
}
