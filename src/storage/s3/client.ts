/**
 * One S3 request, done right: signed with the current credentials, each attempt under a timeout and
 * the run's signal, transient failures retried with backoff (src/storage/retry.ts), and the last
 * failure mapped onto the storage errors. The other s3/ modules send everything through request().
 */
import { S3Client } from "@bradenmacdonald/s3-lite-client";
import { StorageUnavailableError } from "../../errors.ts";
import type { CredentialProvider, S3Credentials } from "../credentials.ts";
import { DEFAULT_RETRIES, DEFAULT_TIMEOUT_MS, type RetryPolicy, withRetries } from "../retry.ts";
import { assertValidKey } from "../types.ts";
import type { DownloadTuning } from "./download.ts";
import { describe, mapS3Error } from "./errors.ts";
import { runWithSignal } from "./fetch-signal.ts";

export interface S3Config {
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing "/" ("" for the bucket root). */
  prefix: string;
  /** Full endpoint URL (scheme, host, optional port). */
  endpoint: string;
  region: string;
  pathStyle: boolean;
  /** Static credentials, a provider (refreshed temporary credentials), or null for anonymous requests. */
  credentials: S3Credentials | CredentialProvider | null;
  /** Multipart part size in bytes (S3 requires at least 5 MiB for all but the last part). */
  partSize?: number;
  /** How many parts may be uploading at once. */
  partConcurrency?: number;
  /** Downloads in parts: bytes per part and parts at once (src/storage/s3/download.ts). */
  download?: DownloadTuning;
  /** Retries and per-request timeout (defaults: 5 retries, 60 s). */
  retry?: Partial<RetryPolicy>;
  /** Told about each retry, for the log. */
  onRetry?: (message: string) => void;
  /** The run's signal (SIGINT/SIGTERM/SIGHUP): every request and every wait between retries follows it. */
  signal?: AbortSignal;
}

export type RequestOptions = Parameters<S3Client["makeRequest"]>[0];

/** The bucket and prefix one S3Storage works in, and the requests it sends there. */
export class S3Connection {
  readonly url: string;
  /** The key prefix as it starts object names: "prefix/", or "" at the bucket root. */
  readonly base: string;
  readonly retry: RetryPolicy;
  /** Where the credentials in use came from, once known (for messages). */
  credentialSource: string | null = null;
  private readonly credentials: CredentialProvider;
  private client: { for: S3Credentials | null; s3: S3Client } | undefined;
  /** The latest Date header, and when it came by this machine's monotonic clock. */
  private serverClock: { at: number; date: number } | undefined;

  constructor(readonly config: S3Config) {
    this.url = `s3://${config.bucket}${config.prefix ? `/${config.prefix}` : ""}`;
    this.base = config.prefix ? `${config.prefix}/` : "";
    this.retry = {
      retries: config.retry?.retries ?? DEFAULT_RETRIES,
      timeoutMs: config.retry?.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      baseDelayMs: config.retry?.baseDelayMs,
      maxDelayMs: config.retry?.maxDelayMs,
    };
    const given = config.credentials;
    this.credentials = given && "get" in given ? given : { get: async () => given };
  }

  /** The client for the current credentials: a new one when a refresh has replaced them. */
  private async s3(): Promise<S3Client> {
    const credentials = await this.credentials.get();
    this.credentialSource = credentials?.source ?? null;
    if (this.client?.for !== credentials) {
      const { endpoint, region, bucket, pathStyle } = this.config;
      const s3 = new S3Client({
        endPoint: endpoint,
        region,
        bucket,
        pathStyle,
        accessKey: credentials?.accessKeyId,
        secretKey: credentials?.secretAccessKey,
        sessionToken: credentials?.sessionToken,
      });
      this.client = { for: credentials, s3 };
    }
    return this.client.s3;
  }

  /** The server's clock now, from the latest Date header and the time since (undefined before any answer). */
  serverNow(): Date | undefined {
    const clock = this.serverClock;
    return clock && new Date(clock.date + (performance.now() - clock.at));
  }

  /** The object name of a storage key. Throws on an invalid key. */
  objectName(key: string): string {
    assertValidKey(key);
    return this.base + key;
  }

  /**
   * One S3 request with retries. `read` consumes the response inside the attempt (so a body that
   * breaks is retried too); without it the body is discarded. Failures are mapped onto the storage
   * errors after the last attempt.
   */
  async request<T = Response>(
    key: string,
    options: RequestOptions,
    signal?: AbortSignal,
    read?: (response: Response) => Promise<T>,
    { retry = this.retry, followRun = true }: { retry?: RetryPolicy; followRun?: boolean } = {},
  ): Promise<T> {
    let attempts = 0;
    const started = performance.now();
    try {
      return await withRetries(
        (attemptSignal, attempt) =>
          runWithSignal(attemptSignal, async () => {
            attempts = attempt + 1;
            const response = await (await this.s3()).makeRequest(options);
            const date = Date.parse(response.headers.get("date") ?? "");
            if (Number.isFinite(date)) this.serverClock = { at: performance.now(), date };
            return read ? await read(response) : (response as T);
          }),
        retry,
        {
          signal: followRun ? this.runSignal(signal) : signal,
          onRetry: (error, attempt, delay) =>
            this.config.onRetry?.(
              `retrying ${options.method} ${key} (attempt ${attempt + 1} of ${retry.retries + 1}) in ${delay} ms: ${describe(error)}`,
            ),
        },
      );
    } catch (error) {
      const mapped = mapS3Error(error, key, this.config, this.credentialSource);
      // Say how hard it was tried: six timeouts of a minute each are not "check the network" at once.
      if (attempts > 1 && mapped instanceof StorageUnavailableError)
        throw new StorageUnavailableError(
          `${mapped.message} (${attempts} attempts over ${formatElapsed(performance.now() - started)})`,
          mapped.hint,
          { cause: error },
        );
      throw mapped;
    }
  }

  /** A call's own signal joined with the run's, so that neither is ever missed. */
  runSignal(signal?: AbortSignal): AbortSignal | undefined {
    const run = this.config.signal;
    if (!run || signal === run) return signal ?? run;
    return signal ? AbortSignal.any([signal, run]) : run;
  }
}

function formatElapsed(ms: number): string {
  const seconds = Math.round(ms / 1000);
  return seconds < 60 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}
