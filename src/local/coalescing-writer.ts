/**
 * Writes a file in pieces of at least WRITE_BYTES, whatever the chunks it is given (an uncompressed
 * download's are far smaller; a gzip member's or zstd frame's 2 MiB pass straight through). The file
 * system caches a file written in 2 MiB pieces in bigger units than one written in 64 KiB ones, and
 * the integrity check then reads it faster (docs/design/codec.md).
 */
import type { FileHandle } from "node:fs/promises";
import { writeFully } from "./fsync.ts";

/** Bytes per write of the database file, at least. */
const WRITE_BYTES = 2 * 1024 * 1024;

export class CoalescingWriter {
  private readonly pending = new Uint8Array(WRITE_BYTES);
  private pendingBytes = 0;

  constructor(private readonly handle: FileHandle) {}

  async write(chunk: Uint8Array): Promise<void> {
    if (this.pendingBytes === 0 && chunk.byteLength >= WRITE_BYTES) return this.put(chunk);
    for (let at = 0; at < chunk.byteLength; ) {
      const n = Math.min(WRITE_BYTES - this.pendingBytes, chunk.byteLength - at);
      this.pending.set(chunk.subarray(at, at + n), this.pendingBytes);
      this.pendingBytes += n;
      at += n;
      if (this.pendingBytes === WRITE_BYTES) await this.flush();
    }
  }

  /** Write what is pending. */
  async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const bytes = this.pendingBytes;
    this.pendingBytes = 0;
    await this.put(this.pending.subarray(0, bytes));
  }

  private async put(bytes: Uint8Array): Promise<void> {
    await writeFully(this.handle, bytes);
  }
}
