/**
 * How S3 failures and answers that are not what was asked for become the storage error contract
 * (src/storage/types.ts). An <Error> document in a 200 answer is a server error and is retried;
 * an HTML page or another document is a failure, never an empty or a successful answer.
 */
import { S3Errors } from "@bradenmacdonald/s3-lite-client";
import { AuthError, NotFoundError, StorageUnavailableError, VaultError } from "../../errors.ts";
import { AttemptTimeoutError, TransientError } from "../retry.ts";
import { rootElement, xmlText } from "./xml.ts";

/** An error document is small; a bigger body of an XML type is taken as the object it claims to be. */
const MAX_ERROR_DOCUMENT = 64 * 1024;

/** Map an s3-lite-client or fetch failure onto the storage error contract. Never includes secrets. */
export function mapS3Error(
  error: unknown,
  key: string,
  config: { bucket: string; endpoint: string },
  credentialSource: string | null,
): Error {
  if (error instanceof VaultError) return error;
  if (error instanceof S3Errors.ServerError) return mapServerError(error, key, config, credentialSource);
  if (error instanceof TransientError || error instanceof AttemptTimeoutError)
    return new StorageUnavailableError(
      `S3 request for ${key} failed: ${error.message}`,
      "check the network and the endpoint; --retries, --timeout and --deadline tune how long it is tried",
    );
  if (error instanceof S3Errors.S3Error) return new VaultError(`S3 client: ${error.message}`, "check --repo and the endpoint");
  if (error instanceof Error && error.name === "AbortError") return error;
  const message = error instanceof Error ? error.message : String(error);
  return new StorageUnavailableError(`cannot reach S3 endpoint ${config.endpoint}: ${message}`, "check the endpoint URL and the network", {
    cause: error,
  });
}

function mapServerError(
  error: S3Errors.ServerError,
  key: string,
  config: { bucket: string; endpoint: string },
  credentialSource: string | null,
): Error {
  const code = error.code;
  const status = error.statusCode;
  if (code === "NoSuchBucket")
    return new StorageUnavailableError(
      `bucket ${config.bucket} does not exist at ${config.endpoint}`,
      "create the bucket, or check --repo and the endpoint",
    );
  if (code === "NoSuchKey" || code === "NoSuchUpload" || (status === 404 && code !== "NoSuchBucket"))
    return new NotFoundError(`${key} not found`);
  if (code === "RequestTimeTooSkewed")
    return new AuthError(
      `S3 rejected the request: this machine's clock differs too much from the server's`,
      "sync the clock (for example with NTP) and retry",
    );
  if (status === 401 || status === 403) {
    const detail = code === "UnrecognizedError" ? `HTTP ${status}` : code;
    const hint = credentialSource
      ? `check the access key and secret (credentials from ${credentialSource}) and the bucket's permissions`
      : "no credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the instance a role";
    return new AuthError(`S3 refused access to bucket ${config.bucket} (${detail})`, hint);
  }
  if (code === "PreconditionFailed" || status === 412)
    return new StorageUnavailableError(`${key} changed on the server during the download`, "retry");
  if (code === "UnexpectedRedirect" || status === 301)
    return new StorageUnavailableError(
      `S3 redirected the request for bucket ${config.bucket}: wrong region or endpoint`,
      "set the bucket's region with ?region= or AWS_REGION",
    );
  return new StorageUnavailableError(`S3 error on ${key}: ${code} (HTTP ${status}): ${error.message}`);
}

/** A failure in a few words, for retry messages. */
export function describe(error: unknown): string {
  if (error instanceof S3Errors.ServerError) return `${error.code} (HTTP ${error.statusCode})`;
  return error instanceof Error ? error.message : String(error);
}

export function unexpectedAnswer(endpoint: string, what: string, answer: string): StorageUnavailableError {
  return new StorageUnavailableError(
    `${endpoint} answered ${what} with ${answer}, not what S3 answers`,
    "check the endpoint and the bucket (--repo, ?endpoint=)",
  );
}

/**
 * A 200 answer must be the document asked for. Throws TransientError for an <Error> document (S3
 * documents it for CompleteMultipartUpload), StorageUnavailableError for anything else.
 */
export function expectDocument(endpoint: string, xml: string, root: string, what: string): void {
  const found = rootElement(xml);
  if (found === root) return;
  if (found === "Error") throw new TransientError(`S3 answered ${what} with an error: ${xmlText(xml, "Code") ?? "no code"}`);
  throw unexpectedAnswer(
    endpoint,
    what,
    found === undefined ? "something that is not XML" : /^html$/i.test(found) ? "an HTML page" : `a <${found}> document`,
  );
}

/**
 * A GET answered 200 must carry the object: our objects are never XML or HTML, so a body of that
 * type is looked at, and an <Error> in it is a server error (retried), not a damaged backup.
 * Returns a response whose body can still be read.
 */
export async function expectObject(endpoint: string, response: Response, key: string): Promise<Response> {
  const type = response.headers.get("content-type") ?? "";
  const length = Number(response.headers.get("content-length") ?? Number.NaN);
  if (!/xml|html/i.test(type) || length > MAX_ERROR_DOCUMENT) return response;
  const bytes = new Uint8Array(await response.arrayBuffer());
  const text = new TextDecoder().decode(bytes.subarray(0, 4096));
  const root = rootElement(text);
  if (root === "Error") throw new TransientError(`S3 answered GET ${key} with an error: ${xmlText(text, "Code") ?? "no code"}`);
  if (root !== undefined && /^html$/i.test(root)) throw unexpectedAnswer(endpoint, `GET ${key}`, "an HTML page");
  return new Response(bytes, { status: response.status, headers: response.headers });
}

export function isPage(contentType: string | null): boolean {
  return contentType !== null && /html/i.test(contentType);
}
