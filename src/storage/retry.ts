/**
 * Retries for network storage: exponential backoff with jitter, a per-attempt timeout, and a
 * classification of what is worth retrying. Transient: connection refused or reset, timeouts, HTTP
 * 500/502/503/504 and 429, SlowDown, RequestTimeout, and errors a caller marks as TransientError
 * (such as a 200 response whose body is an <Error>). Everything else (403, a missing bucket, an
 * invalid request) fails at once.
 */
import { S3Errors } from "@bradenmacdonald/s3-lite-client";
import { VaultError } from "../errors.ts";
import { sleep } from "../util/sleep.ts";
import { setLongTimeout } from "../util/timer.ts";

export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  /** Each attempt's time limit, in milliseconds. */
  timeoutMs: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export const DEFAULT_RETRIES = 5;
export const DEFAULT_TIMEOUT_MS = 60_000;

/** A failure that deserves another attempt although nothing else marks it as one. */
export class TransientError extends Error {
  override name = "TransientError";
}

/** A per-attempt timeout fired (not the caller's signal). */
export class AttemptTimeoutError extends Error {
  override name = "AttemptTimeoutError";
}

const TRANSIENT_CODES = new Set(["SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"]);
const TRANSIENT_NETWORK =
  /ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|ConnectionRefused|ConnectionClosed|socket|closed unexpectedly|Unable to connect|network|fetch failed/i;

/** Whether another attempt may succeed: the classification in this module's header. */
export function isTransient(error: unknown): boolean {
  if (error instanceof TransientError || error instanceof AttemptTimeoutError) return true;
  // Our own verdicts (an answer that is not what was asked for) are final, whatever their wording.
  if (error instanceof VaultError) return false;
  if (error instanceof S3Errors.ServerError) return error.statusCode >= 500 || error.statusCode === 429 || TRANSIENT_CODES.has(error.code);
  if (error instanceof S3Errors.S3Error) return false;
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code ?? "";
    return TRANSIENT_NETWORK.test(`${code} ${error.name} ${error.message}`);
  }
  return false;
}

/**
 * Exponential backoff with "equal jitter": half of base x 2^attempt (capped) for sure, the other half
 * at random. Clients retrying at once spread out, yet a short outage is always outlasted: five
 * retries wait at least 0.1 + 0.2 + 0.4 + 0.8 + 1.6 = 3.1 s in all.
 */
export function backoffDelay(attempt: number, policy: RetryPolicy, random = Math.random): number {
  const cap = Math.min(policy.maxDelayMs ?? 10_000, (policy.baseDelayMs ?? 200) * 2 ** attempt);
  return Math.round(cap / 2 + (random() * cap) / 2);
}

/**
 * Run `operation` until it succeeds, fails permanently, or runs out of retries. Each attempt gets a
 * signal that aborts on its timeout or on the caller's signal; an abort by the caller is never retried.
 * Throws the last error.
 */
export async function withRetries<T>(
  operation: (signal: AbortSignal, attempt: number) => Promise<T>,
  policy: RetryPolicy,
  options: { signal?: AbortSignal; onRetry?: (error: unknown, attempt: number, delayMs: number) => void } = {},
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    options.signal?.throwIfAborted();
    const controller = new AbortController();
    const timer = setLongTimeout(
      () => controller.abort(new AttemptTimeoutError(`no answer within ${policy.timeoutMs / 1000}s`)),
      policy.timeoutMs,
    );
    const onAbort = () => controller.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      // An operation that missed its signal somewhere still ends when the signal aborts.
      return await untilAborted(operation(controller.signal, attempt), controller.signal);
    } catch (thrown) {
      options.signal?.throwIfAborted();
      // fetch reports an abort as its own error; report why we aborted instead.
      const error =
        controller.signal.aborted && controller.signal.reason instanceof AttemptTimeoutError ? controller.signal.reason : thrown;
      if (attempt >= policy.retries || !isTransient(error)) throw error;
      const delay = backoffDelay(attempt, policy);
      options.onRetry?.(error, attempt + 1, delay);
      await sleep(delay, options.signal);
    } finally {
      timer.clear();
      options.signal?.removeEventListener("abort", onAbort);
    }
  }
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([promise, aborted]).finally(() => signal.removeEventListener("abort", onAbort));
}
