import { defineCommand } from "citty";
import { dataObjectProblem, isFutureDated, listManifests, newestBackup, repositoryNow } from "../repo/catalog.ts";
import { UsageError, VaultError } from "../errors.ts";
import { parseDuration, subtractDuration } from "../repo/retention.ts";
import { databaseArgs, outputArgs, repoArgs } from "./_args.ts";
import { runCommand } from "./_run.ts";
import { configArgs, resolveTargets } from "../config/targets.ts";

const args = {
  ...databaseArgs,
  ...repoArgs,
  "max-age": { type: "string", valueHint: "DURATION", description: "Fail when the newest backup is older than this (such as 26h)" },
  ...configArgs,
  ...outputArgs,
} as const;

interface StatusEntry {
  name: string;
  newest: { id: string; createdAt: string; ageSeconds: number } | null;
  ok: boolean;
  reason: string | null;
  /** Backups dated beyond this machine's clock (plus a tolerance): reported, never taken as newest. */
  futureDated: string[];
}

interface StatusResult {
  repo: string;
  maxAgeSeconds: number | null;
  databases: StatusEntry[];
  ok: boolean;
}

export default defineCommand({
  meta: { name: "status", description: "Check from anywhere that the newest backup is recent enough (for monitoring)" },
  args,
  run: ({ args: flags, rawArgs }) =>
    runCommand<StatusResult>({
      flags,
      rawArgs,
      argsDef: args,
      async execute(ctx) {
        const maxAge = flags["max-age"] ? parseDuration(flags["max-age"], "--max-age") : undefined;
        // "30m" is months in retention; for a freshness check it would never fail.
        if (maxAge && (maxAge.months || maxAge.years)) throw new UsageError(`--max-age ${maxAge.text} reads as months or years`, "write minutes as min, hours as h, days as d: --max-age 90min");
        const now = new Date();
        const limit = maxAge ? subtractDuration(now, maxAge).getTime() : undefined;
        const { targets } = resolveTargets(flags, ctx.log, { signal: ctx.signal });
        const databases: StatusEntry[] = [];
        for (const target of targets) {
          const entries = await listManifests(target.storage, target.name);
          const names = target.name ? [target.name] : [...new Set(entries.map((e) => e.name))].sort();
          if (names.length === 0) databases.push({ name: "(any)", newest: null, ok: false, reason: `no backups in ${target.storage.url}`, futureDated: [] });
          for (const name of names) {
            const own = entries.filter((e) => e.name === name);
            const futureDated = own.filter((e) => isFutureDated(e.id, repositoryNow(target.storage, now))).map((e) => e.id);
            const candidate = await newestBackup(target.storage, own, { now, log: ctx.log });
            if (!candidate) {
              const why = futureDated.length ? `no backups of ${name} in ${target.storage.url} dated up to now (${futureDated.length} dated in the future)` : `no backups of ${name} in ${target.storage.url}`;
              databases.push({ name, newest: null, ok: false, reason: why, futureDated });
              continue;
            }
            if (!candidate.ok) {
              // What restore --latest would refuse is no recent backup.
              databases.push({ name, newest: null, ok: false, reason: `the newest backup of ${name}, ${candidate.entry.id}, cannot be used: ${candidate.error.message}`, futureDated });
              continue;
            }
            const newest = candidate.manifest;
            // Usable means restorable as far as a look can tell: its data object is there, whole.
            const why = dataObjectProblem(newest, (await target.storage.stat(newest.stored.key))?.size);
            if (why) {
              databases.push({ name, newest: null, ok: false, reason: `the newest backup of ${name}, ${newest.id}, cannot be restored: ${why}`, futureDated });
              continue;
            }
            const created = Date.parse(newest.createdAt);
            // Within the tolerance a backup may be dated a little ahead (another host's clock): age 0.
            const ageSeconds = Math.max(0, Math.round((now.getTime() - created) / 1000));
            const stale = limit !== undefined && created < limit;
            databases.push({
              name,
              newest: { id: newest.id, createdAt: newest.createdAt, ageSeconds },
              ok: !stale,
              reason: stale ? `the newest backup of ${name} is ${describeAge(ageSeconds)} old, older than ${maxAge!.text}` : null,
              futureDated,
            });
          }
        }
        const failing = databases.filter((d) => !d.ok);
        if (failing.length) throw new VaultError(failing.map((d) => d.reason).join("; "), maxAge ? "check that the backup job runs (cron, sqlite-vault cron) and succeeds" : undefined);
        return { repo: [...new Set(targets.map((t) => t.storage.url))].join(", "), maxAgeSeconds: maxAge ? (now.getTime() - limit!) / 1000 : null, databases, ok: true };
      },
      quietOnSuccess: true,
      render: (r) => r.databases.map((d) => `${d.name}: newest backup ${d.newest!.id}, ${describeAge(d.newest!.ageSeconds)} old`).join("\n"),
    }),
});

function describeAge(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}
