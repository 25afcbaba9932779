/**
 * The stored object of a backup, as the manifest describes it: its existence and size (step
 * "object") with its bytes as a stream, and their SHA-256. Also the one place a backup is called corrupt.
 */
import type { RunContext } from "../context.ts";
import { NotFoundError, StorageUnavailableError, VaultError, VerificationError } from "../errors.ts";
import type { BackupManifest } from "../repo/manifest.ts";
import type { Storage } from "../storage/types.ts";
import { createDigestStream, iterate, mapStreamErrors, type Digest } from "../util/streams.ts";

/** A backup whose bytes are damaged (step "checksum"); `what` says how. */
export function corrupt(manifest: BackupManifest, what: string): VerificationError {
  return new VerificationError(`backup ${manifest.id} is corrupt: ${what}`, "checksum");
}

/** The stored bytes differ from the manifest's SHA-256; `detail` follows the message. */
export function storedMismatch(manifest: BackupManifest, detail = ""): VerificationError {
  return corrupt(manifest, `the stored object does not match its manifest's SHA-256${detail}`);
}

/**
 * The stored object's bytes, after step "object": it exists and has the size the manifest records
 * (as the answer to the GET states it: no request of its own). Either failing is VerificationError
 * ("object"); a failure of the stream that is not already a VaultError becomes StorageUnavailableError.
 */
export async function openObject(storage: Storage, manifest: BackupManifest, ctx: RunContext): Promise<ReadableStream<Uint8Array>> {
  const key = manifest.stored.key;
  try {
    const source = await storage.get(key, { signal: ctx.signal });
    // An answer that states no size is measured as it is read (src/check/download.ts).
    if (source.size !== undefined && source.size !== manifest.stored.bytes) {
      await source.cancel().catch(() => {});
      throw new VerificationError(
        `backup ${manifest.id}: its data object is ${source.size} bytes, the manifest says ${manifest.stored.bytes}`,
        "object",
      );
    }
    return mapStreamErrors(source, (error) =>
      error instanceof VaultError ? error : new StorageUnavailableError(`download of ${key} failed: ${(error as Error).message}`),
    );
  } catch (error) {
    if (error instanceof NotFoundError) throw new VerificationError(`backup ${manifest.id}: its data object ${key} is missing`, "object");
    throw error;
  }
}

/** Size and SHA-256 of the stored object, read whole; `onBytes` is told each block read. */
export async function digestObject(
  storage: Storage,
  manifest: BackupManifest,
  ctx: RunContext,
  onBytes?: (bytes: number) => void,
): Promise<Digest> {
  const digest = createDigestStream(onBytes);
  for await (const _ of iterate((await openObject(storage, manifest, ctx)).pipeThrough(digest.stream), ctx.signal));
  return digest.result();
}
