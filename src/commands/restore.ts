import { parseSelection } from "../repo/catalog.ts";
import { ExitCode, UsageError } from "../errors.ts";
import { runRestore, type RestoreResult } from "../ops/restore.ts";
import { databaseArgs, decryptArgs, outputArgs, repoArgs } from "./_args.ts";
import { defineVaultCommand, keyFlags } from "./_run.ts";
import { renderRestore, type RestoreOutcome } from "./_views.ts";
import { configArgs, resolveTargets } from "../config/targets.ts";
import { exitCodeOver, forEachTarget } from "../config/run-targets.ts";

const args = {
  ...databaseArgs,
  ...repoArgs,
  latest: { type: "boolean", description: "Restore the newest backup (the default)" },
  id: { type: "string", description: "Restore the backup with this id" },
  at: { type: "string", valueHint: "TIME", description: "Restore the newest backup at or before this ISO 8601 time" },
  output: { type: "string", alias: "o", valueHint: "PATH", description: "Restore to this path instead of DB" },
  force: { type: "boolean", description: "Replace an existing database (it is moved aside, not deleted)" },
  "if-missing": { type: "boolean", description: "Do nothing when the database exists; succeed when there is no backup yet" },
  quick: { type: "boolean", description: "Run PRAGMA quick_check instead of the full integrity_check" },
  fallback: { type: "boolean", description: "If a backup fails verification, restore the next older one that passes" },
  ...decryptArgs,
  ...configArgs,
  ...outputArgs,
} as const;

export default defineVaultCommand({
  meta: { name: "restore", description: "Restore a verified backup atomically into place" },
  args,
  async execute({ flags, rawArgs, ctx }): Promise<RestoreResult | { results: RestoreOutcome[]; failed: string[] }> {
    const selection = parseSelection({ latest: flags.latest, id: flags.id, at: flags.at });
    const path = flags.output || flags.db;
    if (!path && !flags["if-missing"])
      throw new UsageError("where to? pass the database path, or --name NAME --output PATH", "sqlite-vault restore /var/lib/app/app.db");
    if (flags.output && !flags.db && !flags.name)
      throw new UsageError("which backup? pass --name NAME (or the database path) with --output");
    const set = resolveTargets({ ...flags, db: flags.db || (flags.name ? undefined : flags.output) }, ctx.log, {
      needsDb: flags.name
        ? undefined
        : { command: "restore", example: "sqlite-vault restore /var/lib/app/app.db --repo s3://bucket/prefix --if-missing" },
      signal: ctx.signal,
      keys: keyFlags(flags, rawArgs),
    });
    // With no arguments (restore --if-missing): every configured database, the start-up restore.
    const outcomes = await forEachTarget(set, ctx, "restore", (target) => {
      const to = flags.output || target.db;
      if (!to) throw new UsageError(`where to? ${target.name} is not in the config file; pass --output PATH`);
      const input = {
        name: target.name!,
        target: to,
        selection,
        force: flags.force,
        ifMissing: flags["if-missing"],
        quick: flags.quick,
        fallback: flags.fallback,
        decryption: target.keys.decryption(),
      };
      return runRestore(target.storage, input, ctx);
    });
    if (!set.fromConfig) return (outcomes[0] as { result: RestoreResult }).result;
    const results = outcomes.map(
      (o): RestoreOutcome =>
        o.ok
          ? { name: o.target.name!, ok: true, result: o.result }
          : { name: o.target.name!, ok: false, error: { message: o.error.message, exitCode: o.error.exitCode } },
    );
    return { results, failed: results.filter((r) => !r.ok).map((r) => r.name) };
  },
  exitCode: (r) => ("results" in r ? exitCodeOver(r.failed.length, []) : ExitCode.ok),
  quietOnSuccess: true,
  render: (r) =>
    "results" in r
      ? r.results.map((o) => (o.ok ? renderRestore(o.result!) : `FAILED ${o.name}: ${o.error!.message}`)).join("\n")
      : renderRestore(r),
});
