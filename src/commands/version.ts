import { defineCommand } from "citty";
import { Database } from "bun:sqlite";
import { BUILD, compareVersions, WAL_RESET_FIX } from "../version.ts";
import { outputArgs } from "./_args.ts";
import { runCommand } from "./_run.ts";

const args = { ...outputArgs } as const;

interface VersionInfo {
  version: string;
  commit: string;
  buildDate: string;
  target: string;
  bun: string;
  sqlite: { version: string; source: "bundled" | "system"; walResetFix: boolean };
}

export default defineCommand({
  meta: { name: "version", description: "Print the version, build and the SQLite this binary runs with" },
  args,
  run: ({ args: flags, rawArgs }) =>
    runCommand<VersionInfo>({
      flags,
      rawArgs,
      argsDef: args,
      async execute() {
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
          sqlite: { version: sqlite, source: process.platform === "darwin" ? "system" : "bundled", walResetFix: compareVersions(sqlite, WAL_RESET_FIX) >= 0 },
        };
      },
      render: (v) =>
        [
          `sqlite-vault ${v.version} (${v.commit}${v.buildDate ? `, built ${v.buildDate}` : ""}) ${v.target}`,
          `bun ${v.bun}, SQLite ${v.sqlite.version} (${v.sqlite.source}${v.sqlite.walResetFix ? "" : `; older than ${WAL_RESET_FIX}, which fixes a WAL-reset corruption bug`})`,
        ].join("\n"),
    }),
});
