import { checkStatus, describeAge, statusLimit, statusResult, type StatusEntry, type StatusResult } from "../ops/status.ts";
import { forEachTarget } from "../config/run-targets.ts";
import { configArgs, resolveTargets } from "../config/targets.ts";
import { databaseArgs, outputArgs, repoArgs } from "./_args.ts";
import { defineVaultCommand } from "./_run.ts";

export default defineVaultCommand({
  meta: { name: "status", description: "Check from anywhere that the newest backup is recent enough (for monitoring)" },
  args: {
    ...databaseArgs,
    ...repoArgs,
    "max-age": { type: "string", valueHint: "DURATION", description: "Fail when the newest backup is older than this (such as 26h)" },
    ...configArgs,
    ...outputArgs,
  },
  async execute({ flags, ctx }): Promise<StatusResult> {
    const at = statusLimit(flags["max-age"]);
    const set = resolveTargets(flags, ctx.log, { signal: ctx.signal });
    const outcomes = await forEachTarget(set, ctx, "status", (target) => checkStatus(target.storage, target.name, at, ctx));
    // A configured database whose repository cannot be read is a failing status like a stale one.
    const databases: StatusEntry[] = outcomes.flatMap((o) =>
      o.ok ? o.result : [{ name: o.target.name ?? "(any)", newest: null, ok: false, reason: o.error.message, futureDated: [] }],
    );
    return statusResult(
      set.targets.map((t) => t.storage.url),
      databases,
      at,
    );
  },
  quietOnSuccess: true,
  render: (r) => r.databases.map((d) => `${d.name}: newest backup ${d.newest!.id}, ${describeAge(d.newest!.ageSeconds)} old`).join("\n"),
});
