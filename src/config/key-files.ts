/**
 * Key files and keys given as text, read and checked before anything runs: regular files of sane
 * size only, a warning when others may read them, identities checked without ever being quoted.
 */
import { statSync } from "node:fs";
import { UsageError } from "../errors.ts";
import { ageLibrary } from "../pipeline/age.ts";
import type { Logger } from "../logger.ts";
import { assertTrustedFile, readSmallFile } from "../local/small-file.ts";

/** An identity that age accepts, or a UsageError that names where it came from and never quotes it. */
export function checkedIdentity(identity: string, where: string): string {
  const problem = identity.startsWith("AGE-PLUGIN-")
    ? "is an age plugin identity, which sqlite-vault does not support"
    : !identity.startsWith("AGE-SECRET-KEY-1")
      ? "is not an age identity (AGE-SECRET-KEY-1…)"
      : "";
  if (!problem)
    try {
      new (ageLibrary().Decrypter)().addIdentity(identity);
      return identity;
    } catch {
      throw new UsageError(
        `${where} is not a valid age identity (mistyped or cut short)`,
        "copy the whole AGE-SECRET-KEY-1… line from the file keygen wrote",
      );
    }
  throw new UsageError(
    `${where} ${problem}`,
    "an identity file holds AGE-SECRET-KEY-1… lines, as sqlite-vault keygen or age-keygen write them",
  );
}

export function nonEmpty(value: string, name: string): string {
  if (!value.trim()) throw new UsageError(`${name} is empty: it must name a file`);
  return value;
}

export function readKeyLines(path: string, what: string): string[] {
  return readSecretFile(path, what)
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
}

export function readSecretFile(path: string, what: string): string {
  try {
    // Whoever may change a recipients, passphrase or identity file chooses whom backups are encrypted to.
    return readSmallFile(path, undefined, (info) => assertTrustedFile(`the ${what}`, path, info));
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`cannot read the ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

export function warnIfReadableByOthers(path: string, log: Logger): void {
  const info = statSync(path, { throwIfNoEntry: false });
  if (info && info.mode & 0o077) log.warn(`${path} is readable by group or others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`);
}
