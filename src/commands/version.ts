import { readVersionInfo, type VersionInfo } from "../ops/version.ts";
import { WAL_RESET_FIX } from "../version.ts";
import { outputArgs } from "./_args.ts";
import { defineVaultCommand } from "./_run.ts";

export default defineVaultCommand({
  meta: { name: "version", description: "Print the version, build and the SQLite this binary runs with" },
  args: { ...outputArgs },
  execute: async () => readVersionInfo(),
  render: (v: VersionInfo) =>
    [
      `sqlite-vault ${v.version} (${v.commit}${v.buildDate ? `, built ${v.buildDate}` : ""}) ${v.target}`,
      `bun ${v.bun}, SQLite ${v.sqlite.version} (${v.sqlite.source}${v.sqlite.walResetFix ? "" : `; older than ${WAL_RESET_FIX}, which fixes a WAL-reset corruption bug`})`,
    ].join("\n"),
});
