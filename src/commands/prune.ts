import { resolveNow } from "../config/settings.ts";
import { ExitCode, UsageError } from "../errors.ts";
import { DEFAULT_GRACE, runPrune, type PruneReport } from "../ops/prune.ts";
import { isEmptyPolicy, parseDuration, parsePolicy } from "../repo/retention.ts";
import { databaseArgs, outputArgs, policyArgs, repoArgs } from "./_args.ts";
import { defineVaultCommand } from "./_run.ts";
import { renderPrune } from "./_views.ts";
import { configArgs, resolveTargets } from "../config/targets.ts";

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
  async execute({ flags, ctx }): Promise<PruneReport> {
    const { targets } = resolveTargets(flags, ctx.log, { signal: ctx.signal });
    const plans = targets.map((target) => {
      const policy = parsePolicy(target.settings.retention);
      if (isEmptyPolicy(policy)) throw new UsageError(`prune needs a retention policy${target.name ? ` for ${target.name}` : ""}`, "for example: --keep-daily 7 --keep-weekly 4, or --keep-last 3 (or retention: in the config file)");
      return { target, policy, grace: parseDuration(target.settings.retention.grace ?? DEFAULT_GRACE, "--grace") };
    });
    const now = resolveNow(process.env)();
    const reports: PruneReport[] = [];
    for (const { target, policy, grace } of plans) reports.push(await runPrune(target.storage, { name: target.name, policy, dryRun: flags["dry-run"], grace, now }, ctx));
    return mergePruneReports(reports);
  },
  quietOnSuccess: true,
  render: renderPrune,
  exitCode: (r) => (r.failures > 0 ? ExitCode.partial : ExitCode.ok),
});

function mergePruneReports(reports: PruneReport[]): PruneReport {
  if (reports.length === 1) return reports[0]!;
  return {
    repo: [...new Set(reports.map((r) => r.repo))].join(", "),
    dryRun: reports[0]!.dryRun,
    policy: [...new Set(reports.map((r) => r.policy))].join("; "),
    names: reports.flatMap((r) => r.names),
    housekeeping: {
      removed: reports.flatMap((r) => r.housekeeping.removed),
      aborted: reports.flatMap((r) => r.housekeeping.aborted),
      young: reports.flatMap((r) => r.housekeeping.young),
      failed: reports.flatMap((r) => r.housekeeping.failed),
    },
    failures: reports.reduce((n, r) => n + r.failures, 0),
  };
}
