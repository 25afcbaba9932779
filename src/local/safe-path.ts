/**
 * Paths root writes through. Root must not be steered by another user's symbolic link: a user who
 * can replace app.db (or a directory on the way) with a link could otherwise have root write or
 * replace a file wherever the link leads. The tool resolves links itself (to restore into the file a
 * link leads to), which also sidesteps the kernel's protected_symlinks, so it checks them itself.
 */
import { accessSync, constants, lstatSync, readlinkSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { VaultError } from "../errors.ts";

/**
 * `path` made absolute with every symbolic link in it resolved (what it names need not exist).
 * As root, a link owned by another user may lead only into a directory that same user owns (the
 * application's volume, the case links are followed for); any other throws VaultError. Nothing is
 * checked for other users, whom the kernel's permissions already keep to their own files.
 */
export function resolveForWrite(path: string): string {
  return resolveIn(resolve(path), { hops: 0 });
}

/** lstat, or undefined when nothing is there to follow (missing, or a file where a directory is named). */
function lstatQuiet(path: string) {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
    throw error;
  }
}

function resolveIn(path: string, count: { hops: number }): string {
  const parts = path.split("/").filter(Boolean);
  let resolved = "/";
  for (let i = 0; i < parts.length; i++) {
    const next = join(resolved, parts[i]!);
    const link = lstatQuiet(next);
    if (!link?.isSymbolicLink()) {
      resolved = next;
      continue;
    }
    if (++count.hops > 40) throw new VaultError(`${path}: too many levels of symbolic links`);
    const leadsTo = resolve(resolved, readlinkSync(next));
    const real = resolveIn(leadsTo, count);
    if (process.getuid?.() === 0 && link.uid !== 0) {
      const into = statSync(real, { throwIfNoEntry: false })?.isDirectory() ? real : dirname(real);
      if (statSync(into, { throwIfNoEntry: false })?.uid !== link.uid)
        throw new VaultError(
          `${next} is a symbolic link owned by uid ${link.uid} leading to ${leadsTo}, outside the directories that user owns; refusing to follow it as root`,
          "give the real path, or let the link lead into that user's own directory",
        );
    }
    resolved = real;
  }
  return resolved;
}

/** Whether this user may write `path` (access(2) W_OK). */
export function canWrite(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
