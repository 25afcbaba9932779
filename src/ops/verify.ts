/**
 * verify: prove that stored backups restore. Each chosen backup goes through every check of
 * src/check/fetch.ts into a private temp file (one per worker at a time, removed right after), a few at a
 * time. A backup that fails is a result, not an exception; storage and credential failures abort the
 * run. Data objects that no manifest names are reported as warnings, never as failures.
 */
import { mkdtemp } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { isFutureDated, mapLimit, readCatalog } from "../repo/catalog.ts";
import { checkStoredBytes, fetchAndCheck, keyMismatchFailure, type IntegrityCheck } from "../check/fetch.ts";
import { NoMatchingIdentityError, type DecryptionSettings } from "../pipeline/age.ts";
import type { RunContext } from "../context.ts";
import { resolveForWrite } from "../local/safe-path.ts";
import { removeStale, tempTag } from "../local/stale.ts";
import { freeSpace, isNoSpace, NoSpaceError, VaultError, VerificationError, type CheckStep } from "../errors.ts";
import { manifestKey, newestFirst, verifiedKey, type BackupManifest } from "../repo/manifest.ts";
import type { Storage } from "../storage/types.ts";
import { VERSION } from "../version.ts";

export type VerifySelection = "latest" | "all" | { id: string };

export interface VerifyInput {
  /** Only this name; every name in the repository when omitted. */
  name?: string;
  selection: VerifySelection;
  quick?: boolean;
  tmpDir: string;
  concurrency: number;
  /** Write a marker beside each backup that passes, for `list`. */
  record?: boolean;
  /** Keys for encrypted backups; without them only their stored bytes can be checked. */
  decryption?: DecryptionSettings;
}

export interface VerifyEntry {
  name: string;
  id: string;
  createdAt: string | null;
  result: "pass" | "fail";
  /** What was checked: the whole database, or (an encrypted backup without its key) only the stored bytes. */
  checked: "database" | "stored-bytes" | null;
  /** The step that failed, or null when it passed. */
  step: CheckStep | null;
  message: string | null;
  warnings: string[];
  seconds: number;
}

export interface VerifyReport {
  repo: string;
  check: IntegrityCheck;
  results: VerifyEntry[];
  /** Data objects that no manifest names: interrupted uploads. */
  orphans: { key: string; size: number; lastModified: string }[];
  passed: number;
  failed: number;
  /** Backups that passed whose `--record` marker could not be written (each says so in its warnings). */
  unrecorded: number;
}

/** The selection matched no backup (for one database of many: a failure in the report, not the end of it). */
export class NothingToVerifyError extends VaultError {}

type Candidate = { manifest: BackupManifest } | { invalid: { name: string; id: string; storedAt: Date; reason: string } };

/**
 * Verify the chosen backups. Results are in the order chosen (newest first). Throws VaultError when
 * nothing matches the selection, storage errors when the storage fails, the signal's reason on abort.
 */
export async function runVerify(storage: Storage, input: VerifyInput, ctx: RunContext): Promise<VerifyReport> {
  const catalog = await readCatalog(storage, input.name);
  const all: Candidate[] = [...catalog.backups.map((manifest) => ({ manifest })), ...catalog.invalid.map((invalid) => ({ invalid }))].sort(
    (a, b) => newestFirst({ id: idOf(a) }, { id: idOf(b) }),
  );
  // The newest of a name is what restore --latest would take: never one it passes over.
  const future = new Set(catalog.futureDated.map((f) => f.backup));
  const passedOver = (c: Candidate) => ("manifest" in c ? future.has(c.manifest) : isFutureDated(c.invalid));
  const chosen = choose(all, input.selection, passedOver);
  if (chosen.length === 0) {
    const what = typeof input.selection === "object" ? `backup ${input.selection.id}` : "backups";
    throw new NothingToVerifyError(
      `no ${what}${input.name ? ` of ${input.name}` : ""} in ${storage.url} to verify`,
      "run: sqlite-vault list",
    );
  }
  for (const orphan of catalog.orphans) ctx.log.warn(`${orphan.key} has no manifest (an interrupted upload?); it is not a backup`);

  const check: IntegrityCheck = input.quick ? "quick_check" : "integrity_check";
  const tmpDir = resolveForWrite(input.tmpDir);
  removeStale(tmpDir, "sqlite-vault-verify-");
  const workDir = ctx.temp.add(await mkdtemp(join(tmpDir, `sqlite-vault-verify-${tempTag()}-`)));
  const outcomes: (VerifyEntry | null)[] = new Array(chosen.length);
  let done = 0;
  // Several backups are checked at once: one count of the stored bytes of them all.
  const verifying = () => `verifying ${done}/${chosen.length} backup(s)`;
  ctx.progress?.phase(
    verifying(),
    chosen.reduce((sum, c) => sum + ("manifest" in c ? c.manifest.stored.bytes : 0), 0),
  );
  try {
    await mapLimit(
      chosen.map((candidate, index) => ({ candidate, index })),
      Math.max(1, input.concurrency),
      async ({ candidate, index }) => {
        outcomes[index] = await verifyOne(storage, candidate, join(workDir, `${index}.sqlite`), input, ctx);
        done++;
        ctx.progress?.rename(verifying());
      },
    );
  } finally {
    ctx.progress?.end();
    ctx.temp.remove(workDir);
  }
  const results = outcomes.filter((r): r is VerifyEntry => r !== null);
  const failed = results.filter((r) => r.result === "fail").length;
  const unrecorded = results.filter((r) => r.warnings.some((w) => w.startsWith(UNRECORDED))).length;
  return {
    repo: storage.url,
    check,
    results,
    orphans: catalog.orphans.map((o) => ({ key: o.key, size: o.size, lastModified: o.lastModified.toISOString() })),
    passed: results.length - failed,
    failed,
    unrecorded,
  };
}

async function verifyOne(
  storage: Storage,
  candidate: Candidate,
  path: string,
  input: VerifyInput,
  ctx: RunContext,
): Promise<VerifyEntry | null> {
  const started = performance.now();
  const seconds = () => Math.round((performance.now() - started) / 10) / 100;
  if ("invalid" in candidate) {
    const { name, id, reason } = candidate.invalid;
    return {
      name,
      id,
      createdAt: null,
      result: "fail",
      checked: null,
      step: "manifest",
      message: reason,
      warnings: [],
      seconds: seconds(),
    };
  }
  const { manifest } = candidate;
  const base = { name: manifest.name, id: manifest.id, createdAt: manifest.createdAt };
  const keys = input.decryption;
  try {
    if (manifest.stored.encryption && !keys?.identities.length && !keys?.passphrases.length) {
      await checkStoredBytes(storage, manifest, ctx, (n) => ctx.progress?.advance(n));
      const warning =
        "encrypted, and no identity or passphrase was given: only the stored bytes' SHA-256 was checked, not the database itself";
      return { ...base, result: "pass", checked: "stored-bytes", step: null, message: null, warnings: [warning], seconds: seconds() };
    }
    const free = freeSpace(dirname(path));
    const hint = `free some space there, or check in a larger directory with --tmp-dir DIR${input.concurrency > 1 ? " (or one backup at a time: --concurrency 1)" : ""}`;
    // Refused before a byte is written, as restore does.
    if (free !== null && manifest.database.bytes > free)
      throw new NoSpaceError(dirname(dirname(path)), manifest.database.bytes, free, `to verify ${manifest.name} ${manifest.id}`, hint);
    const progress = { downloaded: (n: number) => ctx.progress?.advance(n), checking: () => {} };
    const { warnings } = await fetchAndCheck(
      storage,
      manifest,
      path,
      { mode: 0o600, quick: input.quick, decryption: keys, progress },
      ctx,
    ).catch((error) => {
      if (!isNoSpace(error)) throw error;
      throw new NoSpaceError(dirname(dirname(path)), manifest.database.bytes, free, `to verify ${manifest.name} ${manifest.id}`, hint, {
        cause: error,
      });
    });
    // A marker that cannot be written takes nothing from the check that passed, nor from the others.
    const unrecorded = input.record
      ? await recordPass(storage, manifest, input.quick ? "quick_check" : "integrity_check", ctx).then(
          () => [],
          (error) => {
            if (ctx.signal.aborted) throw error;
            return [`${UNRECORDED}: ${(error as Error).message}`];
          },
        )
      : [];
    return {
      ...base,
      result: "pass",
      checked: "database",
      step: null,
      message: null,
      warnings: [...warnings, ...unrecorded],
      seconds: seconds(),
    };
  } catch (error) {
    // Keys were given and none opens this backup (say, one from before a key rotation): these keys
    // cannot restore it, which is a failure of this backup, not the end of the drill for the others.
    const failure = error instanceof NoMatchingIdentityError ? keyMismatchFailure(error, manifest) : error;
    if (!(failure instanceof VerificationError)) throw error;
    // A backup a concurrent prune removed is no failed check: it is simply not there any more.
    if (failure.step === "object" && !(await storage.stat(manifestKey(manifest.name, manifest.id)))) {
      ctx.log.info(`${manifest.name} ${manifest.id} was removed while verify ran (a prune); not counted`);
      return null;
    }
    ctx.log.error(`${manifest.name} ${manifest.id}: failed step ${failure.step}: ${failure.message}`);
    return { ...base, result: "fail", checked: null, step: failure.step, message: failure.message, warnings: [], seconds: seconds() };
  } finally {
    ctx.temp.remove(path);
  }
}

const UNRECORDED = "it passed, but its marker for list (--record) could not be written";

async function recordPass(storage: Storage, manifest: BackupManifest, check: IntegrityCheck, ctx: RunContext): Promise<void> {
  const marker = {
    id: manifest.id,
    name: manifest.name,
    verifiedAt: new Date().toISOString(),
    check,
    host: hostname(),
    toolVersion: VERSION,
  };
  await storage.put(verifiedKey(manifest.name, manifest.id), new TextEncoder().encode(`${JSON.stringify(marker, null, 2)}\n`), {
    signal: ctx.signal,
  });
}

function idOf(candidate: Candidate): string {
  return "manifest" in candidate ? candidate.manifest.id : candidate.invalid.id;
}

function nameOf(candidate: Candidate): string {
  return "manifest" in candidate ? candidate.manifest.name : candidate.invalid.name;
}

/** latest: the newest backup of each name; all: every one; { id }: that one. Newest first. */
function choose(all: Candidate[], selection: VerifySelection, passedOver: (c: Candidate) => boolean): Candidate[] {
  if (selection === "all") return all;
  if (typeof selection === "object") return all.filter((c) => idOf(c) === selection.id);
  const seen = new Set<string>();
  return all.filter((c) => !passedOver(c) && !seen.has(nameOf(c)) && seen.add(nameOf(c)) !== undefined);
}

/** One database with nothing to verify (none backed up yet), as a failed entry of a report over several; any other error is rethrown. */
export function nothingToVerifyReport(error: unknown, name: string, repo: string, check: VerifyReport["check"]): VerifyReport {
  if (!(error instanceof NothingToVerifyError)) throw error;
  const entry = {
    name,
    id: "-",
    createdAt: null,
    result: "fail" as const,
    checked: null,
    step: null,
    message: error.message,
    warnings: [],
    seconds: 0,
  };
  return { repo, check, results: [entry], orphans: [], passed: 0, failed: 1, unrecorded: 0 };
}
