import { ExitCode, UsageError } from "../errors.ts";
import { nothingToVerifyReport, runVerify, type VerifyReport, type VerifySelection } from "../ops/verify.ts";
import { databaseArgs, decryptArgs, outputArgs, repoArgs, tmpDirArgs } from "./_args.ts";
import { defineVaultCommand, keyFlags } from "./_run.ts";
import { renderVerify, type VerifyOutput } from "./_views.ts";
import { configArgs, resolveTargets } from "../config/targets.ts";
import { exitCodeOver, failedTargets, forEachTarget, mergeReports } from "../config/run-targets.ts";

const args = {
  ...databaseArgs,
  ...repoArgs,
  latest: { type: "boolean", description: "Verify the newest backup of each name (the default)" },
  id: { type: "string", description: "Verify the backup with this id" },
  all: { type: "boolean", description: "Verify every backup" },
  quick: { type: "boolean", description: "Run PRAGMA quick_check instead of the full integrity_check" },
  concurrency: { type: "string", valueHint: "N", description: "Backups checked at once with --all (default 2)" },
  record: { type: "boolean", description: "Write a marker beside each backup that passes, shown by list" },
  ...decryptArgs,
  ...tmpDirArgs,
  ...configArgs,
  ...outputArgs,
} as const;

export default defineVaultCommand({
  meta: { name: "verify", description: "Prove that stored backups restore: checksums, SQLite header and integrity_check" },
  args,
  async execute({ flags, rawArgs, ctx }): Promise<VerifyOutput> {
    const chosen = [flags.latest && "--latest", flags.id && "--id", flags.all && "--all"].filter(Boolean);
    if (chosen.length > 1) throw new UsageError(`${chosen.join(" and ")} cannot be combined`);
    const selection: VerifySelection = flags.all ? "all" : flags.id ? { id: flags.id } : "latest";
    const concurrency = flags.concurrency === undefined ? 2 : Number(flags.concurrency);
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64)
      throw new UsageError(`--concurrency must be a whole number from 1 to 64, not ${flags.concurrency}`);
    const set = resolveTargets(flags, ctx.log, { signal: ctx.signal, keys: keyFlags(flags, rawArgs) });
    const check = flags.quick ? "quick_check" : "integrity_check";
    // Keys first: a bad key file stops the command before anything is verified.
    for (const target of set.targets) target.keys.decryption();
    const outcomes = await forEachTarget(set, ctx, "verify", (target) => {
      const input = {
        name: target.name,
        selection,
        quick: flags.quick,
        tmpDir: target.settings.tmpDir,
        concurrency,
        record: flags.record,
        decryption: target.keys.decryption(),
      };
      // One of several databases with nothing to verify (none backed up yet) fails in the report; the others are still verified.
      return set.targets.length > 1
        ? runVerify(target.storage, input, ctx).catch((error) => nothingToVerifyReport(error, target.name!, target.storage.url, check))
        : runVerify(target.storage, input, ctx);
    });
    const empty: VerifyReport = {
      repo: set.targets.map((t) => t.storage.url).join(", "),
      check,
      results: [],
      orphans: [],
      passed: 0,
      failed: 0,
      unrecorded: 0,
    };
    const report: VerifyOutput = mergeReports(
      outcomes.flatMap((o) => (o.ok ? [o.result] : [])),
      empty,
    );
    for (const r of report.results) for (const w of r.warnings) ctx.log.warn(`${r.name} ${r.id}: ${w}`);
    const failed = failedTargets(outcomes);
    return failed.length ? { ...report, failedDatabases: failed } : report;
  },
  quietOnSuccess: true,
  render: renderVerify,
  exitCode: (r) =>
    exitCodeOver(r.failedDatabases?.length ?? 0, [
      r.failed > 0 ? ExitCode.verification : r.unrecorded > 0 ? ExitCode.partial : ExitCode.ok,
    ]),
});
