/**
 * Which processes have a database open, from /proc (Linux): a restore must not replace a database in
 * use, whose application would go on with the file moved aside.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { VaultError } from "../errors.ts";
import { SIDECARS } from "./sidecars.ts";

/**
 * Refuse to replace a database another process has open (Linux: its /proc/PID/fd; processes this
 * user may not inspect are not seen): the application would go on reading and writing the file moved
 * aside, and its writes would never reach the restored database. Checked again just before the swap.
 */
export function refuseIfOpen(target: string): void {
  const holders = openedBy(target);
  if (holders.length)
    throw new VaultError(
      `${target} is open in ${holders.map((h) => `${h.name} (pid ${h.pid})`).join(", ")}; refusing to replace a database in use`,
      "stop the application, restore, then start it again",
    );
}

/** Other processes that have `path`, or its -wal or -shm, open. */
function openedBy(path: string): { pid: number; name: string }[] {
  const proc = "/proc";
  const files = new Set<string>();
  for (const file of [path, ...SIDECARS.map((s) => path + s)]) {
    const stat = statSync(file, { throwIfNoEntry: false });
    if (stat) files.add(`${stat.dev}:${stat.ino}`);
  }
  if (files.size === 0) return [];
  let pids: string[];
  try {
    pids = readdirSync(proc).filter((name) => /^\d+$/.test(name) && Number(name) !== process.pid);
  } catch {
    return []; // no /proc (macOS)
  }
  const holders: { pid: number; name: string }[] = [];
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(join(proc, pid, "fd"));
    } catch {
      continue; // gone, or not ours to see
    }
    const holds = fds.some((fd) => {
      try {
        const stat = statSync(join(proc, pid, "fd", fd));
        return files.has(`${stat.dev}:${stat.ino}`);
      } catch {
        return false; // closed meanwhile, or not ours to see
      }
    });
    if (holds) holders.push({ pid: Number(pid), name: processName(join(proc, pid)) });
  }
  return holders;
}

function processName(dir: string): string {
  try {
    return readFileSync(join(dir, "comm"), "utf8").trim();
  } catch {
    return "a process";
  }
}
