/**
 * Small files written whole and put in place in one step (a metrics file, a new identity): a hidden
 * temp file beside the target, created exclusively under a name no one can guess (so nothing planted
 * there, a symbolic link least of all, is ever written through), written in full and fsynced, then
 * renamed over the target, or linked to it where an existing file must never be replaced. On any
 * failure the temp file is removed and the target is as it was; never a half-written or empty file.
 */
import { closeSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/**
 * Write `data` to `path` as described above. `replace: false` throws the file system's EEXIST error
 * when `path` exists. Throws the file system's errors (ENOSPC, EACCES) as they come.
 */
export function writeFileAtomically(path: string, data: string | Uint8Array, options: { mode: number; replace: boolean }): void {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${crypto.randomUUID()}.tmp`);
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  let fd: number;
  try {
    fd = openSync(temp, "wx", options.mode);
  } catch (error) {
    throw asTarget(error, temp, path);
  }
  try {
    try {
      for (let offset = 0; offset < bytes.byteLength; ) offset += writeSync(fd, bytes, offset, bytes.byteLength - offset);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (options.replace) renameSync(temp, path);
    else {
      linkSync(temp, path);
      unlinkSync(temp);
    }
  } catch (error) {
    try {
      unlinkSync(temp);
    } catch {}
    throw asTarget(error, temp, path);
  }
  syncDirectory(dir);
}

/** An error about the temp file, told of the file it stands for (the one the user named). */
function asTarget(error: unknown, temp: string, path: string): unknown {
  const e = error as NodeJS.ErrnoException;
  if (e?.path === temp) {
    e.path = path;
    e.message = e.message.replaceAll(temp, path);
  }
  return error;
}

function syncDirectory(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
