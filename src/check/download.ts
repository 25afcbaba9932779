/**
 * Step "checksum" of a stored backup, as one line of stages: fetch the object through its digest,
 * decrypt it, split and decompress it (src/pipeline/codec.ts), and write the database file (whose own
 * SHA-256 src/check/fetch.ts reads back beside the integrity check). Each stage's failure is told
 * apart from damage here: storage and file-system errors pass through, everything else is checked
 * against the stored SHA-256.
 */
import { open } from "node:fs/promises";
import type { RunContext } from "../context.ts";
import { VaultError } from "../errors.ts";
import { CoalescingWriter } from "../local/coalescing-writer.ts";
import {
  decryptStream,
  NoMatchingIdentityError,
  redactSecrets,
  UnencryptedBackupError,
  unencryptedRefused,
  type DecryptionSettings,
} from "../pipeline/age.ts";
import { collectGarbage } from "../pipeline/codec.ts";
import { decompress, discard } from "../pipeline/decompress.ts";
import type { BackupManifest } from "../repo/manifest.ts";
import type { Storage } from "../storage/types.ts";
import { BusyTime } from "../util/busy.ts";
import { createDigestStream, iterate, type Digest } from "../util/streams.ts";
import { corrupt, digestObject, openObject, storedMismatch, type Prefetch } from "./stored.ts";

export interface DownloadOptions {
  /** The new file's mode. */
  mode: number;
  decryption?: DecryptionSettings;
  /** Told each block of stored bytes downloaded. */
  downloaded?: (bytes: number) => void;
  /** A GET of the data object already begun. */
  prefetch?: Prefetch;
}

/**
 * Where the streamed phase went, for the debug lines: download, decompression and the write overlap,
 * so each is timed on its own. Milliseconds from the download's start to its last stored byte; the
 * time spent decompressing pieces and writing the file, summed over their calls.
 */
export interface DownloadTimes {
  lastByteMs: number;
  decompress: BusyTime;
  write: BusyTime;
}

/**
 * Chunks that are not decompressed pieces (an uncompressed backup's, an old single-stream one's) are
 * left to the collector, which lags far behind: a collection every so many of their bytes keeps
 * memory flat (measurements: docs/design/codec.md).
 */
const COLLECT_BYTES = 64 * 1024 * 1024;

/**
 * Stream the backup into a new file at `path`: the stored bytes checked against their SHA-256, and
 * the database exactly as long as the manifest says. Throws VerificationError ("object",
 * "checksum"), NoMatchingIdentityError when no key opens it (UnencryptedBackupError, before a byte
 * is read, when keys were given for an unencrypted backup), storage and file-system errors as they
 * come, the signal's reason when aborted. The caller owns `path`.
 */
export async function download(
  storage: Storage,
  manifest: BackupManifest,
  path: string,
  options: DownloadOptions,
  ctx: RunContext,
): Promise<DownloadTimes> {
  const { stored, database } = manifest;
  if (!stored.encryption && unencryptedRefused(options.decryption))
    throw new UnencryptedBackupError(
      `backup ${manifest.id} is not encrypted, and keys to decrypt with were given: refusing it, as anyone who can write to the storage could have stored it`,
      "to read it anyway (a backup from before encryption was turned on), pass --allow-unencrypted",
    );
  const started = performance.now();
  const times: DownloadTimes = { lastByteMs: 0, decompress: new BusyTime(), write: new BusyTime() };
  const storedDigest = createDigestStream((bytes) => {
    times.lastByteMs = performance.now() - started;
    options.downloaded?.(bytes);
  });
  const fetched = (await openObject(storage, manifest, ctx, options.prefetch)).pipeThrough(storedDigest.stream);
  const compressed = stored.encryption ? await decrypt(fetched, storage, manifest, options.decryption, ctx) : fetched;
  const plain = decompress(compressed, stored.compression, { busy: times.decompress });
  const handle = await open(path, "wx", options.mode);
  let written = 0;
  try {
    written = await writeDatabase(plain, new CoalescingWriter(handle), manifest, ctx.signal, times.write);
  } catch (error) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    throw explainFailure(error, manifest, storedDigest.result);
  } finally {
    await handle.close();
  }
  const s = storedDigest.result();
  if (s.bytes !== stored.bytes || s.sha256 !== stored.sha256) throw storedMismatch(manifest, ` (${s.bytes} of ${stored.bytes} bytes read)`);
  if (written !== database.bytes) throw corrupt(manifest, `it decompresses to ${written} bytes, the manifest says ${database.bytes}`);
  return times;
}

/**
 * The decrypted stream. A header that no key opens, or that does not parse, may be damage: the
 * stored object is hashed again to tell, so a key mismatch is only reported for sound stored bytes.
 */
async function decrypt(
  fetched: ReadableStream<Uint8Array>,
  storage: Storage,
  manifest: BackupManifest,
  keys: DecryptionSettings | undefined,
  ctx: RunContext,
): Promise<ReadableStream<Uint8Array>> {
  try {
    return await decryptStream(fetched, keys ?? { identities: [], passphrases: [] }, `backup ${manifest.id}`);
  } catch (error) {
    if (ctx.signal.aborted || (error instanceof VaultError && !(error instanceof NoMatchingIdentityError))) throw error;
    // A damaged header reads like a wrong key, or does not parse: the stored checksum tells which.
    const digest = await digestObject(storage, manifest, ctx);
    if (digest.sha256 !== manifest.stored.sha256) throw storedMismatch(manifest);
    if (error instanceof NoMatchingIdentityError) throw error;
    throw corrupt(manifest, `its age header does not parse (${redactSecrets((error as Error).message)})`);
  }
}

/** Write `plain` through `writer`; returns its length. Never lets a damaged or hostile object expand past the database it claims to hold. */
async function writeDatabase(
  plain: ReadableStream<Uint8Array>,
  writer: CoalescingWriter,
  manifest: BackupManifest,
  signal: AbortSignal,
  busy: BusyTime,
): Promise<number> {
  let written = 0;
  let sinceCollect = 0;
  for await (const chunk of iterate(plain, signal)) {
    written += chunk.byteLength;
    if (written > manifest.database.bytes)
      throw corrupt(manifest, `it decompresses to more than the manifest's ${manifest.database.bytes} bytes`);
    await busy.time(() => writer.write(chunk));
    // Written (or copied into the writer's buffer): a decompressed piece is freed now.
    if (!discard(chunk)) sinceCollect += chunk.byteLength;
    if (sinceCollect >= COLLECT_BYTES) {
      sinceCollect = 0;
      collectGarbage();
    }
  }
  await busy.time(() => writer.flush());
  return written;
}

/**
 * What a failure of the write stage means. Storage and file-system errors pass through; anything
 * else came from the decryption or the decompressor: damage, named by the stored checksum when the
 * whole object was read and does not match.
 */
function explainFailure(error: unknown, manifest: BackupManifest, storedDigest: () => Digest): unknown {
  if (error instanceof VaultError || isFsError(error)) return error;
  const s = storedDigest();
  if (s.sha256 !== manifest.stored.sha256 && s.bytes === manifest.stored.bytes) return storedMismatch(manifest);
  return corrupt(manifest, `${manifest.stored.encryption ? "decryption or " : ""}decompression failed (${(error as Error).message})`);
}

function isFsError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code;
  return typeof code === "string" && /^E[A-Z]+$/.test(code);
}
