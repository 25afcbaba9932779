/**
 * The one storage interface every backend implements, and the contract they all share
 * (test/storage/contract.ts runs the same suite against each).
 *
 * Keys are relative to the repository root ("app/20261122T…json"); backends add their own prefix.
 * Keys are checked once, by assertValidKey: no empty segments, no "." or "..", no leading "/".
 *
 * Error contract, for every method:
 * - the repository itself missing (no bucket, no directory) or unreachable -> StorageUnavailableError (exit 10)
 * - credentials refused or access denied -> AuthError (exit 12)
 * - a key that does not exist -> NotFoundError from get(); null from stat(); ignored by delete()
 * - an aborted signal -> the signal's reason is thrown and nothing partial is left visible; a backend
 *   given a run signal when opened follows it in every method, stat, list and delete included
 * - a 200 answer that is not what was asked for (an <Error> document, another service's page) is a
 *   failure (StorageUnavailableError after retries), never an empty listing, a missing key or data
 */

export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
}

/**
 * A write that was started and never finished or aborted: an incomplete S3 multipart upload, or a
 * local temp file. It is invisible to list() and get(); prune's housekeeping removes old ones.
 */
export interface PartialWrite {
  /** The key being written, when the backend knows it; otherwise the temp object's own key. */
  key: string;
  /**
   * Whether `key` is the key being written (S3's multipart uploads name it): then the caller tells
   * its own writes by the key, since others' may share the prefix. Otherwise the write is the
   * backend's own temp object, made by this tool.
   */
  named?: boolean;
  /** Backend handle (an upload id, a temp path). */
  handle: string;
  /** When the write started (S3) or last wrote (local). */
  startedAt: Date;
}

export interface PutOptions {
  signal?: AbortSignal;
  /** About how many bytes the body holds, when known: lets S3 pick parts big enough for its 10,000-part limit. */
  sizeHint?: number;
}

/**
 * An object's bytes, and its size as the storage stated it before any of them was read (a file's
 * size, an S3 answer's Content-Length; undefined when the answer did not say), so a caller can tell a
 * wrong object from its size without another request.
 */
export type ObjectStream = ReadableStream<Uint8Array> & { readonly size?: number };

export interface GetOptions {
  signal?: AbortSignal;
}

export interface Storage {
  /** The repository as a user would recognise it, never including credentials. */
  readonly url: string;

  /**
   * Store a whole object. Atomic: readers see either no object (or the previous one) or the complete
   * new one, never a prefix, including when the stream errors or the signal aborts. The stream is read
   * once; memory stays bounded by the backend's buffering, not the object's size.
   * Resolves to the stored size, confirmed against the storage after the write.
   */
  put(key: string, body: ReadableStream<Uint8Array> | Uint8Array, options?: PutOptions): Promise<{ size: number }>;

  /** Stream an object, with its size. Throws NotFoundError when the key does not exist. */
  get(key: string, options?: GetOptions): Promise<ObjectStream>;

  /** Size and modification time of a key, or null when it does not exist. */
  stat(key: string): Promise<ObjectInfo | null>;

  /**
   * Every complete object whose key starts with `prefix` ("" for all), in ascending key order, each
   * key once (a network listing that repeats one is de-duplicated). Objects being written by put()
   * are never listed, nor is anything no valid key names (another tool's "a//b", a backslash): it
   * cannot be a backup, and must not stop the listing. An answer that is not a listing, or one that never ends (a continuation that
   * repeats or adds nothing), throws StorageUnavailableError: it is never taken for an empty list.
   */
  list(prefix: string): AsyncIterable<ObjectInfo>;

  /** Delete keys; keys that do not exist are not an error. */
  delete(keys: string[]): Promise<void>;

  /** Writes in progress or abandoned under `prefix`, in no particular order. */
  listPartialWrites(prefix: string): AsyncIterable<PartialWrite>;

  /** Abort one partial write, freeing what it holds. One that is already gone is not an error. */
  abortPartialWrite(write: PartialWrite): Promise<void>;

  /** Confirm the repository exists and is reachable with these credentials. */
  check(): Promise<void>;

  /**
   * Optional: the server's clock, from the Date header of its latest answer, moved on by the time
   * since; undefined before any answer, and for storage without a clock of its own (a directory).
   */
  serverNow?(): Date | undefined;

  // Optional capabilities, restic's way: a caller asks whether the storage has one, never which class
  // it is. Each is present exactly when the backend can do it.

  /**
   * Optional, network backends: how requests address the bucket. Present for storage whose requests
   * are signed and whose large writes go up in parts (doctor probes both).
   */
  readonly addressing?: "path-style" | "virtual-hosted";

  /** Optional, network backends: where the credentials came from; null when requests go unsigned. */
  readonly credentialSource?: string | null;

  /** Optional, network backends: the server's clock, from the Date header of a fresh answer; null when it sends none. */
  serverTime?(): Promise<Date | null>;

  /**
   * Optional, backends that can create their repository cheaply (a local directory): create it when
   * it is missing, as a first backup does, then check() it. Without it (a bucket, which is never
   * created) there is nothing to make, and the first request that needs the repository reports it
   * missing: a backup or a start-up restore spends no round trip on a check of its own.
   */
  create?(): Promise<void>;

  /**
   * Optional, backends with create(): remove the repository itself again. Throws when it holds
   * anything or is already gone; never removes an object.
   */
  removeIfEmpty?(): Promise<void>;
}

/** Whether a key is a plain relative path that cannot escape the repository. */
export function isValidKey(key: string): boolean {
  const segments = key.split("/");
  if (key === "" || key.startsWith("/") || segments.some((s) => s === "" || s === "." || s === "..")) return false;
  return !/[\u0000-\u001f\\]/.test(key);
}

/** Throws when a key could escape the repository or is not a plain relative path. */
export function assertValidKey(key: string): void {
  if (!isValidKey(key)) throw new Error(`invalid storage key: ${JSON.stringify(key)}`);
}
