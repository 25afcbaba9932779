import { resolveNow } from "../config/settings.ts";
import { ExitCode, UsageError } from "../errors.ts";
import { DEFAULT_GRACE, runPrune, type PruneReport } from "../ops/prune.ts";
import { isEmptyPolicy, parseDuration, parsePolicy } from "../repo/retention.ts";
import { databaseArgs, outputArgs, policyArgs, repoArgs } from "./_args.ts";
import { defineVaultCommand } from "./_run.ts";
import { renderPrune, type PruneOutput } from "./_views.ts";
import { configArgs, resolveTargets } from "../config/targets.ts";
import { exitCodeOver, failedTargets, forEachTarget, mergeReports } from "../config/run-targets.ts";

const args = {
  ...databaseArgs,
  ...repoArgs,
  ...policyArgs,
  "dry-run": { type: "boolean", description: "Print the plan (kept with reasons, removed) and delete nothing" },
  ...configArgs,
  ...outputArgs,
} as const;

export default defineVaultCommand({
  meta: { name: "prune", description: "Remove backups a retention policy does not keep, and leftovers of interrupted runs" },
  args,
  async execute({ flags, ctx }): Promise<PruneOutput> {
    const set = resolveTargets(flags, ctx.log, { signal: ctx.signal });
    // Every policy first: a usage error stops the command before anything is deleted.
    const plans = set.targets.map((target) => {
      const policy = parsePolicy(target.settings.retention);
      if (isEmptyPolicy(policy))
        throw new UsageError(
          `prune needs a retention policy${target.name ? ` for ${target.name}` : ""}`,
          "for example: --keep-daily 7 --keep-weekly 4, or --keep-last 3 (or retention: in the config file)",
        );
      return { policy, grace: parseDuration(target.settings.retention.grace ?? DEFAULT_GRACE, "--grace") };
    });
    const now = resolveNow(process.env)();
    const outcomes = await forEachTarget(set, ctx, "prune", (target, i) => {
      const { policy, grace } = plans[i]!;
      return runPrune(target.storage, { name: target.name, policy, dryRun: flags["dry-run"], grace, now }, ctx);
    });
    const housekeeping = { removed: [], aborted: [], young: [], failed: [] };
    const empty: PruneReport = {
      repo: set.targets.map((t) => t.storage.url).join(", "),
      dryRun: flags["dry-run"] === true,
      policy: "",
      names: [],
      housekeeping,
      failures: 0,
    };
    const report = mergeReports(
      outcomes.flatMap((o) => (o.ok ? [o.result] : [])),
      empty,
      { policy: "; " },
    );
    const failed = failedTargets(outcomes);
    return failed.length ? { ...report, failedDatabases: failed } : report;
  },
  quietOnSuccess: true,
  render: renderPrune,
  exitCode: (r) => exitCodeOver(r.failedDatabases?.length ?? 0, [r.failures > 0 ? ExitCode.partial : ExitCode.ok]),
});
