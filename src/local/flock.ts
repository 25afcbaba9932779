/**
 * flock(2) from the C library, through bun:ffi: a lock the kernel holds for an open file and drops
 * when the process ends however it ends, so a killed run never leaves a lock behind that another
 * must judge stale. Undefined where the C library cannot be loaded (the caller then falls back).
 */
import { dlopen, FFIType } from "bun:ffi";

const LOCK_EX = 2;
const LOCK_NB = 4;

type Flock = (fd: number, operation: number) => number;
let flock: Flock | null | undefined;

function load(): Flock | null {
  const names =
    process.platform === "darwin"
      ? ["libc.dylib", "/usr/lib/libSystem.B.dylib"]
      : ["libc.so.6", `libc.musl-${process.arch === "arm64" ? "aarch64" : "x86_64"}.so.1`, "libc.so"];
  for (const name of names) {
    try {
      const lib = dlopen(name, { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
      return lib.symbols.flock as Flock;
    } catch {}
  }
  return null;
}

/**
 * Try to take an exclusive flock on `fd` without waiting: true when taken, false when another open
 * file holds it, undefined when flock is not available here.
 */
export function tryExclusiveLock(fd: number): boolean | undefined {
  if (flock === undefined) flock = load();
  if (!flock) return undefined;
  return flock(fd, LOCK_EX | LOCK_NB) === 0;
}
