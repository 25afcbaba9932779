import { describe, expect, test } from "bun:test";
import { S3Errors } from "@bradenmacdonald/s3-lite-client";
import { AttemptTimeoutError, backoffDelay, isTransient, TransientError, withRetries } from "../../src/storage/retry.ts";

describe("isTransient", () => {
  const transient: [string, unknown][] = [
    ["HTTP 500", new S3Errors.ServerError(500, "InternalError", "x")],
    ["HTTP 502", new S3Errors.ServerError(502, "UnrecognizedError", "x")],
    ["HTTP 503", new S3Errors.ServerError(503, "ServiceUnavailable", "x")],
    ["HTTP 504", new S3Errors.ServerError(504, "UnrecognizedError", "x")],
    ["HTTP 429", new S3Errors.ServerError(429, "TooManyRequests", "x")],
    ["SlowDown", new S3Errors.ServerError(503, "SlowDown", "x")],
    ["RequestTimeout", new S3Errors.ServerError(400, "RequestTimeout", "x")],
    ["a 200 with an <Error> body", new TransientError("x")],
    ["an attempt timeout", new AttemptTimeoutError("x")],
    [
      "connection refused",
      Object.assign(new Error("Unable to connect. Is the computer able to access the url?"), { code: "ConnectionRefused" }),
    ],
    ["connection reset", Object.assign(new Error("The socket connection was closed unexpectedly"), { code: "ECONNRESET" })],
  ];
  const permanent: [string, unknown][] = [
    ["403", new S3Errors.ServerError(403, "AccessDenied", "x")],
    ["bad signature", new S3Errors.ServerError(403, "SignatureDoesNotMatch", "x")],
    ["skewed clock", new S3Errors.ServerError(403, "RequestTimeTooSkewed", "x")],
    ["missing bucket", new S3Errors.ServerError(404, "NoSuchBucket", "x")],
    ["invalid request", new S3Errors.ServerError(400, "InvalidRequest", "x")],
    ["a programming error", new TypeError("undefined is not a function")],
  ];
  for (const [label, error] of transient) test(`${label} is transient`, () => expect(isTransient(error)).toBe(true));
  for (const [label, error] of permanent) test(`${label} is permanent`, () => expect(isTransient(error)).toBe(false));
});

describe("backoff and retries", () => {
  test("delays grow exponentially, with at least half of each step guaranteed, and are capped", () => {
    const policy = { retries: 5, timeoutMs: 1000, baseDelayMs: 200, maxDelayMs: 10_000 };
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, policy, () => 0))).toEqual([100, 200, 400, 800]);
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, policy, () => 1))).toEqual([200, 400, 800, 1600]);
    expect(backoffDelay(20, policy, () => 1)).toBe(10_000);
  });

  test("retries transient failures, then succeeds", async () => {
    let calls = 0;
    const result = await withRetries(
      async () => {
        if (++calls < 3) throw new TransientError("flaky");
        return "ok";
      },
      { retries: 5, timeoutMs: 1000, baseDelayMs: 1 },
    );
    expect([result, calls]).toEqual(["ok", 3]);
  });

  test("gives up after the last retry with the last error", async () => {
    let calls = 0;
    const run = withRetries(
      async () => {
        calls++;
        throw new TransientError(`failure ${calls}`);
      },
      { retries: 2, timeoutMs: 1000, baseDelayMs: 1 },
    );
    await expect(run).rejects.toThrow("failure 3");
    expect(calls).toBe(3);
  });

  test("never retries a permanent failure", async () => {
    let calls = 0;
    const run = withRetries(
      async () => {
        calls++;
        throw new S3Errors.ServerError(403, "AccessDenied", "no");
      },
      { retries: 5, timeoutMs: 1000, baseDelayMs: 1 },
    );
    await expect(run).rejects.toThrow("no");
    expect(calls).toBe(1);
  });

  test("an attempt that takes too long is aborted and retried", async () => {
    let calls = 0;
    const result = await withRetries(
      (signal) =>
        new Promise<string>((resolve, reject) => {
          if (++calls > 1) return resolve("second attempt");
          signal.addEventListener("abort", () => reject(new Error("aborted")));
        }),
      { retries: 1, timeoutMs: 50, baseDelayMs: 1 },
    );
    expect([result, calls]).toEqual(["second attempt", 2]);
  });

  test("the caller's abort is never retried", async () => {
    const controller = new AbortController();
    let calls = 0;
    const run = withRetries(
      async () => {
        calls++;
        controller.abort(new Error("Ctrl-C"));
        throw new TransientError("flaky");
      },
      { retries: 5, timeoutMs: 1000, baseDelayMs: 1 },
      { signal: controller.signal },
    );
    await expect(run).rejects.toThrow("Ctrl-C");
    expect(calls).toBe(1);
  });
});
