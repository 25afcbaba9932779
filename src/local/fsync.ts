/**
 * Durable local writes: a write that may take only part of a chunk, and the fsyncs that make a file's
 * bytes and a rename survive a crash. Shared by the local storage backend and the restore's download.
 */
import { open, type FileHandle } from "node:fs/promises";

/** Write all of `chunk` at the file's current position (one write may take only part of it). */
export async function writeFully(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}

/** Make a rename durable: fsync the directory that holds it. */
export async function syncDirectory(dir: string): Promise<void> {
  if (process.platform === "win32") return;
  await syncPath(dir);
}

/** fsync a file (or directory) by its path, after whoever wrote it has closed it. */
export async function syncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
