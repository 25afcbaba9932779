/**
 * Steps "sqlite" and "integrity" of a stored backup, on the local copy a download wrote: the file's
 * header against the manifest, that it opens, and the integrity pragmas (src/check/integrity.ts).
 */
import { VerificationError } from "../errors.ts";
import { readDatabaseHeader } from "../pipeline/snapshot.ts";
import type { BackupManifest } from "../repo/manifest.ts";
import { openCopy } from "./copy.ts";
import { checkIntegrity, type IntegrityCheck } from "./integrity.ts";

/**
 * Steps "sqlite" and "integrity" on a local copy (the integrity pragmas split across cores, see
 * src/check/integrity.ts). Returns foreign key findings as warnings.
 */
export async function checkDatabase(
  path: string,
  manifest: BackupManifest,
  check: IntegrityCheck,
  signal?: AbortSignal,
): Promise<string[]> {
  const header = readDatabaseHeader(path);
  if (header.pageSize !== manifest.database.pageSize || header.pageCount !== manifest.database.pageCount)
    throw new VerificationError(
      `backup ${manifest.id}: page size x count ${header.pageSize} x ${header.pageCount} differs from the manifest's ${manifest.database.pageSize} x ${manifest.database.pageCount}`,
      "sqlite",
    );
  try {
    const db = openCopy(path);
    try {
      db.query("SELECT COUNT(*) FROM sqlite_schema").get();
    } finally {
      db.close();
    }
  } catch (error) {
    throw new VerificationError(`backup ${manifest.id} does not open as SQLite: ${(error as Error).message}`, "sqlite");
  }
  const findings = await checkIntegrity(path, check, signal);
  const problems = findings.problems;
  // An index in a collation only the application defines (create_collation, ICU, Android's
  // LOCALIZED) stops SQLite from checking the file at all: not damage, but nothing was verified.
  const collations = [...new Set(problems.map((p) => /no such collation sequence: (\S+)/.exec(p)?.[1]).filter((c) => c !== undefined))];
  if (collations.length && problems.every((p) => /no such collation sequence/.test(p)))
    throw new VerificationError(
      `backup ${manifest.id} cannot be checked here: its schema uses the collation sequence ${collations.join(", ")}, which only the application that made it defines`,
      "integrity",
      'the stored object is a plain database file: README, "Format and recovery without sqlite-vault", restores it by hand',
    );
  if (problems.length)
    throw new VerificationError(
      `backup ${manifest.id} fails ${check}: ${problems.slice(0, 3).join("; ")}${problems.length > 3 ? ` (+${problems.length - 3} more)` : ""}`,
      "integrity",
    );
  return findings.foreignKeys;
}
