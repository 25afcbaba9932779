import { defineCommand } from "citty";
import { resolveNow } from "../config.ts";
import { ExitCode, UsageError } from "../errors.ts";
import { assertValidName, deriveName } from "../manifest.ts";
import { formatTable, formatTime } from "../output.ts";
import { DEFAULT_GRACE, runPrune, type PruneReport } from "../prune.ts";
import { isEmptyPolicy, parseDuration, parsePolicy } from "../retention.ts";
import { databaseArgs, outputArgs, policyArgs, repoArgs } from "./_args.ts";
import { openRepo, runCommand } from "./_run.ts";

const args = {
  ...databaseArgs,
  ...repoArgs,
  ...policyArgs,
  "dry-run": { type: "boolean", description: "Print the plan (kept with reasons, removed) and delete nothing" },
  ...outputArgs,
} as const;

export default defineCommand({
  meta: { name: "prune", description: "Remove backups a retention policy does not keep, and leftovers of interrupted runs" },
  args,
  run: ({ args: flags, rawArgs }) =>
    runCommand<PruneReport>({
      flags,
      rawArgs,
      argsDef: args,
      async execute(ctx) {
        const policy = parsePolicy(flags);
        if (isEmptyPolicy(policy)) throw new UsageError("prune needs a retention policy", "for example: --keep-daily 7 --keep-weekly 4, or --keep-last 3");
        const grace = parseDuration(flags.grace ?? DEFAULT_GRACE, "--grace");
        const name = flags.name || (flags.db ? deriveName(flags.db) : undefined);
        if (name) assertValidName(name);
        const { storage } = openRepo(flags, ctx.log);
        return runPrune(storage, { name, policy, dryRun: flags["dry-run"], grace, now: resolveNow(process.env)() }, ctx);
      },
      render: renderPrune,
      exitCode: (r) => (r.failures > 0 ? ExitCode.partial : ExitCode.ok),
    }),
});

export function renderPrune(r: PruneReport): string {
  const lines: string[] = [];
  for (const n of r.names) {
    lines.push(`${n.name}: keep ${n.keep.length}, ${r.dryRun ? "would remove" : "remove"} ${n.remove.length} (${r.policy})`);
    const rows = [
      ...n.keep.map((k) => [k.id, formatTime(k.createdAt), "keep", k.reasons.join(", ")]),
      ...n.remove.map((b) => [b.id, formatTime(b.createdAt), r.dryRun ? "would remove" : n.removed.includes(b.id) ? "removed" : "FAILED", ""]),
    ].sort((a, b) => (a[0]! < b[0]! ? 1 : -1));
    if (rows.length) lines.push(formatTable(["ID", "TIME (UTC)", "ACTION", "KEPT BY"], rows));
    for (const f of n.failed) lines.push(`could not remove ${n.name} ${f.id}: ${f.error}; it remains listed and restorable`);
  }
  const h = r.housekeeping;
  const verb = r.dryRun ? "would remove" : "removed";
  for (const key of h.removed) lines.push(`${verb} leftover ${key}`);
  for (const key of h.aborted) lines.push(`${r.dryRun ? "would abort" : "aborted"} abandoned upload ${key}`);
  if (h.young.length) lines.push(`left ${h.young.length} leftover(s) younger than the grace period alone`);
  for (const f of h.failed) lines.push(`could not remove leftover ${f.key}: ${f.error}`);
  if (r.names.length === 0) lines.push(`no backups in ${r.repo}`);
  return lines.join("\n");
}
