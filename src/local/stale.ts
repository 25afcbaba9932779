/**
 * Temp files carry the pid of the process that made them, so a later run can tell the leftovers of a
 * process that was killed (kill -9, power loss) from the files of one still running, and remove them.
 */
import { lstatSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";

/** A temp name fragment: "{pid}-{random}". */
export function tempTag(): string {
  return `${process.pid}-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * Remove entries of `dir` named `{prefix}{pid}-…` whose process is gone. Returns what was removed.
 * Never throws: cleaning up is a courtesy, not a reason to fail.
 */
export function removeStale(dir: string, prefix: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(/^(\d+)-/.exec(name.slice(prefix.length))?.[1]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || isAlive(pid)) continue;
    if (!ownLeftover(join(dir, name))) continue;
    try {
      rmSync(join(dir, name), { recursive: true, force: true });
      removed.push(join(dir, name));
    } catch {}
  }
  return removed;
}

/**
 * Whether `path` can be a leftover of this user's: what a run makes is its own and never a link. In a
 * shared temp directory another user may make a name of the same form; root deleting that tree
 * recursively could be steered into other directories, so it is left alone.
 */
function ownLeftover(path: string): boolean {
  const info = lstatSync(path, { throwIfNoEntry: false });
  return info !== undefined && !info.isSymbolicLink() && (process.getuid === undefined || info.uid === process.getuid());
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
