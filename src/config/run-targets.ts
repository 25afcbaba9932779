/**
 * The one way a command runs over its targets, and the one exit rule. From a config file's database
 * list, one database failing must not cost the others their backup, restore, verify or prune: it is
 * logged and recorded, and the run ends as a partial success (README: exit 3). A single database named
 * on the command line fails the command with its own error and exit code.
 */
import type { RunContext } from "../context.ts";
import { ExitCode, InterruptedError, toVaultError, type VaultError } from "../errors.ts";
import { redactSecrets } from "../pipeline/age.ts";
import { redactUrl } from "../storage/index.ts";
import type { Storage } from "../storage/types.ts";
import type { Target, TargetSet } from "./targets.ts";

export type TargetOutcome<R, T = Target> = { target: T; ok: true; result: R } | { target: T; ok: false; error: VaultError };

/** What the runner runs over: targets, or repositories (groupByRepository); `fromConfig`: a failure is recorded and the others still run. */
export interface RunSet<T extends { name?: string }> {
  targets: T[];
  fromConfig: boolean;
}

/** The targets that share one repository, run over once (list). */
export interface RepositoryTarget {
  /** How messages name it: its URL and its databases' names, "URL (alpha, bee)". */
  name: string;
  /** The repository's URL, fit to print. */
  repo: string;
  /** The backup names its targets act on; [undefined]: every name in the repository. */
  names: (string | undefined)[];
  /** The storage of its first target. */
  storage: Storage;
}

/**
 * Run `task` on each target of `set`, in order; outcomes are in the same order. An interruption
 * (ctx.signal aborted) throws its reason at once. A target named on the command line: its error is
 * thrown as it is. Targets from the config file: a failure is logged ("<verb> of NAME failed: …"),
 * recorded as a failed outcome, and the next target runs.
 */
export async function forEachTarget<R, T extends { name?: string } = Target>(
  set: RunSet<T>,
  ctx: RunContext,
  verb: string,
  task: (target: T, index: number) => Promise<R>,
): Promise<TargetOutcome<R, T>[]> {
  const outcomes: TargetOutcome<R, T>[] = [];
  for (const [index, target] of set.targets.entries()) {
    ctx.signal.throwIfAborted();
    try {
      outcomes.push({ target, ok: true, result: await task(target, index) });
    } catch (thrown) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (!set.fromConfig || thrown instanceof InterruptedError) throw thrown;
      const error = toVaultError(thrown);
      ctx.log.error(`${verb} of ${target.name} failed: ${redactMessage(error.message)}`);
      outcomes.push({ target, ok: false, error });
    }
  }
  return outcomes;
}

/**
 * The exit code of a run over targets: any failed target (only a config file's list records one) is
 * a partial success, 3; else the first non-zero code the results carry (verify's 4, prune's 3, …); else 0.
 */
export function exitCodeOver(failedTargets: number, resultCodes: number[]): number {
  if (failedTargets > 0) return ExitCode.partial;
  return resultCodes.find((code) => code !== ExitCode.ok) ?? ExitCode.ok;
}

/**
 * Pure: the targets of `set` by repository, in the order each repository first appears; targets that
 * share one (the same URL, endpoint, region and addressing) give one, with their names. One
 * repository keeps the runner's rule for one target (its error is the command's); two or more from
 * a config file are each recorded when they fail, and the others still run.
 */
export function groupByRepository(set: TargetSet): RunSet<RepositoryTarget> {
  const groups = new Map<string, RepositoryTarget>();
  for (const target of set.targets) {
    const group = groups.get(target.repository);
    if (group) {
      // A target for every name covers the named ones: each backup is listed once.
      if (target.name === undefined) group.names = [undefined];
      else if (!group.names.includes(target.name) && !group.names.includes(undefined)) group.names.push(target.name);
      continue;
    }
    const repo = redactUrl(target.storage.url);
    groups.set(target.repository, { name: repo, repo, names: [target.name], storage: target.storage });
  }
  const targets = [...groups.values()].map((g) => {
    const names = g.names.filter((n) => n !== undefined);
    return names.length ? { ...g, name: `${g.repo} (${names.join(", ")})` } : g;
  });
  return { targets, fromConfig: set.fromConfig && targets.length > 1 };
}

/** An error message fit to print in a report: no credentials in a URL, no age secret key. */
export function redactMessage(message: string): string {
  return redactSecrets(redactUrl(message));
}

/** The failed targets of a run, as reports name them. */
export function failedTargets(outcomes: TargetOutcome<unknown>[]): { name: string; message: string; exitCode: number }[] {
  return outcomes.flatMap((o) =>
    o.ok ? [] : [{ name: o.target.name ?? "(all)", message: redactMessage(o.error.message), exitCode: o.error.exitCode }],
  );
}

/**
 * Pure: per-target reports as one (prune's, verify's). Arrays are concatenated in target order, numbers
 * summed, nested objects merged the same way, strings joined as distinct values (by `separators[key]`,
 * else ", "); anything else is the first report's. One report is returned as it is; none gives `empty`.
 */
export function mergeReports<R extends object>(reports: R[], empty: R, separators: Partial<Record<keyof R, string>> = {}): R {
  if (reports.length === 0) return empty;
  if (reports.length === 1) return reports[0]!;
  return mergeObjects(reports as Record<string, unknown>[], separators as Record<string, string>) as R;
}

function mergeObjects(objects: Record<string, unknown>[], separators: Record<string, string> = {}): Record<string, unknown> {
  const merged: Record<string, unknown> = {};
  for (const key of Object.keys(objects[0]!)) {
    const values = objects.map((o) => o[key]);
    const first = values[0];
    if (Array.isArray(first)) merged[key] = values.flatMap((v) => v as unknown[]);
    else if (typeof first === "number") merged[key] = values.reduce((sum: number, v) => sum + (v as number), 0);
    else if (typeof first === "string") merged[key] = [...new Set(values)].join(separators[key] ?? ", ");
    else if (first !== null && typeof first === "object") merged[key] = mergeObjects(values as Record<string, unknown>[]);
    else merged[key] = first;
  }
  return merged;
}
