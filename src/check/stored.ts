/**
 * The stored object of a backup, as the manifest describes it: its existence and size (step
 * "object") with its bytes as a stream, and their SHA-256. Also the one place a backup is called corrupt.
 */
import type { RunContext } from "../context.ts";
import { contradictedNotFound, NotFoundError, StorageUnavailableError, VaultError, VerificationError } from "../errors.ts";
import type { BackupManifest } from "../repo/manifest.ts";
import type { ObjectStream, Storage } from "../storage/types.ts";
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
 * A data object's GET begun while its manifest is still being read: a restore's download then
 * starts one round trip sooner (20-80 ms on a hosted S3). Its key is only a guess from the listing;
 * openObject takes the answer only for the key the manifest names, whose bytes are then checked
 * like any other. An answer nobody takes is cancelled by release().
 */
export class Prefetch {
  private key: string | undefined;
  private pending: Promise<ObjectStream> | undefined;

  constructor(
    private readonly storage: Storage,
    private readonly signal: AbortSignal,
  ) {}

  /** Begin the GET of `key`; only the first call with a key does. */
  start(key: string | undefined): void {
    if (this.key !== undefined || key === undefined) return;
    this.key = key;
    this.pending = this.storage.get(key, { signal: this.signal });
    this.pending.catch(() => {}); // whoever takes it sees the failure
  }

  /** The begun GET, once, when it is of `key`. */
  take(key: string): Promise<ObjectStream> | undefined {
    if (key !== this.key || !this.pending) return undefined;
    const pending = this.pending;
    this.pending = undefined;
    return pending;
  }

  /** Cancel the answer if nobody took it. */
  release(): void {
    const pending = this.pending;
    this.pending = undefined;
    pending?.then(
      (stream) => stream.cancel().catch(() => {}),
      () => {},
    );
  }
}

/**
 * The stored object's bytes, after step "object": it exists and has the size the manifest records
 * (as the answer to the GET states it: no request of its own). Either failing is VerificationError
 * ("object"); a failure of the stream that is not already a VaultError becomes StorageUnavailableError.
 * The GET is `prefetch`'s when it began one for this key.
 */
export async function openObject(
  storage: Storage,
  manifest: BackupManifest,
  ctx: RunContext,
  prefetch?: Prefetch,
): Promise<ReadableStream<Uint8Array>> {
  const key = manifest.stored.key;
  try {
    const source = await (prefetch?.take(key) ?? storage.get(key, { signal: ctx.signal }));
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
    if (!(error instanceof NotFoundError)) throw error;
    // A second look: a wrong 404 must not call a sound backup damaged (with --fallback, pass it over).
    if (await storage.stat(key)) throw contradictedNotFound(key);
    throw new VerificationError(`backup ${manifest.id}: its data object ${key} is missing`, "object");
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
