/**
 * Files the tool reads whole: key files, the config file, the AWS credentials file. Each is small, so
 * anything else is refused before a byte is read: a FIFO would block the read (and every signal
 * handler) for ever, a device such as /dev/zero never ends, and a huge file would be held in memory.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from "node:fs";
import { UsageError } from "../errors.ts";

/** Far more than any key, credentials or config file holds. */
export const SMALL_FILE_LIMIT = 1024 * 1024;

/** The file is not a regular file, or is larger than the limit. Its message reads after "cannot read FILE: ". */
export class NotASmallFileError extends Error {}

/**
 * The text (UTF-8) of a regular file of at most `limit` bytes; symbolic links are followed. Throws
 * NotASmallFileError for anything else, and the file system's errors (ENOENT, EACCES) as they come.
 * `inspect` sees the stat of the file as opened (the one read, whatever is renamed into its place
 * meanwhile) and may throw to refuse it.
 */
export function readSmallFile(path: string, limit = SMALL_FILE_LIMIT, inspect?: (info: Stats) => void): string {
  // Checked before opening too: opening some devices has effects of its own.
  assertSmall(statSync(path), limit);
  // O_NONBLOCK: a FIFO swapped in after the check must not block the open.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = fstatSync(fd);
    assertSmall(info, limit);
    inspect?.(info);
    const chunks: Buffer[] = [];
    let total = 0;
    // Read to the end, not to the size fstat gave: the file may be growing. One byte past the limit says it is over.
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(64 * 1024, limit + 1 - total));
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      total += n;
      if (total > limit) throw tooLarge(limit);
    }
    return Buffer.concat(chunks, total).toString("utf8");
  } finally {
    closeSync(fd);
  }
}

/**
 * Refuses (UsageError) a file that any user may change, and with `ownedHere`, one that
 * another user owns (root excepted): config and key files decide where backups go and whom they are
 * encrypted to. A file named on purpose may be another user's (a bind mount keeps the host's owner);
 * one found by looking in the working directory must be this user's or root's, since anyone may
 * leave a file in a shared directory. A file its group may change is the group's admin's choice (a
 * volume shared by a pod's processes is made so). `what` names the kind of file ("config file").
 */
export function assertTrustedFile(what: string, path: string, info: Stats, { ownedHere = false } = {}): void {
  const uid = process.getuid?.();
  if (uid === undefined) return;
  if (ownedHere && info.uid !== uid && info.uid !== 0)
    throw new UsageError(
      `${what} ${path} is owned by uid ${info.uid}, neither this user (uid ${uid}) nor root: refusing settings another user may have left here`,
      `if it is meant to be read, name it: --config ${path}`,
    );
  if (info.mode & 0o002)
    throw new UsageError(
      `${what} ${path} may be changed by any user (mode ${(info.mode & 0o777).toString(8).padStart(4, "0")}): refusing settings another user could have written`,
      `chmod o-w ${path}`,
    );
}

function assertSmall(info: Stats, limit: number): void {
  if (!info.isFile()) throw new NotASmallFileError(`it is ${kindOf(info)}, not a regular file`);
  if (info.size > limit) throw tooLarge(limit);
}

function tooLarge(limit: number): NotASmallFileError {
  return new NotASmallFileError(
    `it is larger than ${limit >= 1024 * 1024 ? `${limit / (1024 * 1024)} MiB` : `${limit} bytes`}, more than such a file ever holds`,
  );
}

function kindOf(info: Stats): string {
  if (info.isDirectory()) return "a directory";
  if (info.isFIFO()) return "a FIFO (named pipe)";
  if (info.isCharacterDevice()) return "a character device";
  if (info.isBlockDevice()) return "a block device";
  if (info.isSocket()) return "a socket";
  return "a special file";
}
