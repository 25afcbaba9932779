import { exitCodeOver, forEachTarget, groupByRepository, redactMessage } from "../config/run-targets.ts";
import { configArgs, resolveTargets } from "../config/targets.ts";
import { listBackups, type ListReport } from "../ops/list.ts";
import { newestFirst } from "../repo/manifest.ts";
import { formatBytes, formatRatio, formatTable, formatTime } from "../output.ts";
import { databaseArgs, outputArgs, repoArgs } from "./_args.ts";
import { defineVaultCommand } from "./_run.ts";

const args = { ...databaseArgs, ...repoArgs, ...configArgs, ...outputArgs } as const;

/** Every repository's backups as one list; with several repositories, one that could not be listed is named in `failedRepositories`. */
export interface ListResult extends ListReport {
  name: string | null;
  failedRepositories?: { repo: string; names: string[]; message: string; exitCode: number }[];
}

export default defineVaultCommand({
  meta: { name: "list", description: "List the backups in the repository, newest first" },
  args,
  async execute({ flags, ctx }): Promise<ListResult> {
    const set = resolveTargets(flags, ctx.log, { signal: ctx.signal });
    // Databases that share a repository are listed in one pass over it.
    const repos = groupByRepository(set);
    const outcomes = await forEachTarget(repos, ctx, "list", (repo) => listBackups(repo.storage, { names: repo.names }, ctx));
    const listed = outcomes.flatMap((o) => (o.ok ? [o.result] : []));
    const failed = outcomes.flatMap((o) => {
      if (o.ok) return [];
      const names = o.target.names.filter((n) => n !== undefined);
      return [{ repo: o.target.repo, names, message: redactMessage(o.error.message), exitCode: o.error.exitCode }];
    });
    return {
      repo: [...new Set(repos.targets.map((r) => r.repo))].join(", "),
      name: set.targets.length === 1 ? (set.targets[0]!.name ?? null) : null,
      backups: listed.flatMap((r) => r.backups).sort(newestFirst),
      invalid: listed.flatMap((r) => r.invalid),
      ...(failed.length ? { failedRepositories: failed } : {}),
    };
  },
  render: (r) => {
    const failed = (r.failedRepositories ?? []).map((f) => `could not list ${f.repo} (${f.names.join(", ")}): ${f.message}`);
    if (r.backups.length === 0) return [`no backups${r.name ? ` of ${r.name}` : ""} in ${r.repo}`, ...failed].join("\n");
    const table = formatTable(
      ["NAME", "ID", "TIME (UTC)", "DATABASE", "STORED", "RATIO", "FORMAT", "VERIFIED (UTC)"],
      r.backups.map((b) => [
        b.name,
        b.id,
        `${formatTime(b.createdAt)}${b.futureDated ? " (future)" : ""}`,
        formatBytes(b.databaseBytes),
        formatBytes(b.storedBytes),
        formatRatio(b.ratio),
        `${b.compression}${b.encrypted ? "+age" : ""}`,
        b.damaged ? "DAMAGED" : b.verifiedAt ? formatTime(b.verifiedAt) : "-",
      ]),
    );
    return [table, ...failed].join("\n");
  },
  exitCode: (r) => exitCodeOver(r.failedRepositories?.length ?? 0, []),
});
