/**
 * The one way a command runs over its targets, and the one exit rule. From a config file's database
 * list, one database failing must not cost the others their backup, restore, verify or prune: it is
 * logged and recorded, and the run ends as a partial success (README: exit 3). A single database named
 * on the command line fails the command with its own error and exit code.
 */
import type { RunContext } from "../context.ts";
import { ExitCode, InterruptedError, toVaultError, type VaultError } from "../errors.ts";
import type { Target, TargetSet } from "./targets.ts";

export type TargetOutcome<R> = { target: Target; ok: true; result: R } | { target: Target; ok: false; error: VaultError };

/**
 * Run `task` on each target of `set`, in order; outcomes are in the same order. An interruption
 * (ctx.signal aborted) throws its reason at once. A target named on the command line: its error is
 * thrown as it is. Targets from the config file: a failure is logged ("<verb> of NAME failed: …"),
 * recorded as a failed outcome, and the next target runs.
 */
export async function forEachTarget<R>(
  set: TargetSet,
  ctx: RunContext,
  verb: string,
  task: (target: Target, index: number) => Promise<R>,
): Promise<TargetOutcome<R>[]> {
  const outcomes: TargetOutcome<R>[] = [];
  for (const [index, target] of set.targets.entries()) {
    ctx.signal.throwIfAborted();
    try {
      outcomes.push({ target, ok: true, result: await task(target, index) });
    } catch (thrown) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (!set.fromConfig || thrown instanceof InterruptedError) throw thrown;
      const error = toVaultError(thrown);
      ctx.log.error(`${verb} of ${target.name} failed: ${error.message}`);
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

/** The failed targets of a run, as reports name them. */
export function failedTargets(outcomes: TargetOutcome<unknown>[]): { name: string; message: string; exitCode: number }[] {
  return outcomes.flatMap((o) => (o.ok ? [] : [{ name: o.target.name ?? "(all)", message: o.error.message, exitCode: o.error.exitCode }]));
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
