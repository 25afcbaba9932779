/**
 * Turn a repository URL into a Storage. Accepted forms:
 *   /path, ./path, file:///path              local directory (the embedded default)
 *   s3://bucket[/prefix][?endpoint=URL&region=R&path-style=true|false]
 *
 * S3 settings, highest precedence first: flags (--endpoint, --region, --path-style), the URL query,
 * the environment (SQLITE_VAULT_S3_ENDPOINT, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL; AWS_REGION,
 * AWS_DEFAULT_REGION), the config file, the AWS profile in ~/.aws/config (its services section's s3
 * endpoint_url or its endpoint_url; its region), built-in defaults (AWS, us-east-1).
 */
import { rmdir } from "node:fs/promises";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { UsageError } from "../errors.ts";
import { type Layer, pickLayer } from "../util/layers.ts";
import { readProfileSettings, resolveCredentials, type Env, type ProfileSettings } from "./credentials.ts";
import { FileStorage } from "./file.ts";
import { S3Storage, type S3Config } from "./s3.ts";
import type { Storage } from "./types.ts";

export type { Storage, ObjectInfo } from "./types.ts";

export interface S3Flags {
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
}

export type RepoLocation = { kind: "file"; path: string } | { kind: "s3"; config: Omit<S3Config, "credentials"> };

/** Pure: parse a repo URL and merge S3 settings from flags, the URL and the environment. Throws UsageError. */
export function resolveRepo(
  repo: string,
  flags: S3Flags = {},
  env: Env = {},
  cwd = process.cwd(),
  fallback: S3Flags = {},
  profile: ProfileSettings = {},
): RepoLocation {
  if (!repo) throw new UsageError("the repository URL is empty");
  if (repo.startsWith("file:")) {
    let path: string;
    try {
      path = fileURLToPath(repo);
    } catch {
      throw new UsageError(`invalid file URL ${repo}`, "use file:///absolute/path or a plain path");
    }
    return { kind: "file", path };
  }
  if (repo.startsWith("s3://")) return { kind: "s3", config: resolveS3(repo, flags, env, fallback, profile) };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(repo))
    throw new UsageError(
      `unsupported repository URL scheme in ${redactUrl(repo)}`,
      "use a directory path, file:///path or s3://bucket/prefix",
    );
  return { kind: "file", path: resolve(cwd, repo) };
}

function resolveS3(repo: string, flags: S3Flags, env: Env, fallback: S3Flags, profile: ProfileSettings): Omit<S3Config, "credentials"> {
  let url: URL;
  try {
    url = new URL(repo);
  } catch {
    throw new UsageError(`invalid S3 URL ${redactUrl(repo)}`);
  }
  if (url.username || url.password)
    throw new UsageError("credentials do not belong in the repository URL", "use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a profile");
  const bucket = url.hostname;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
    throw new UsageError(`invalid bucket name "${bucket}" in ${repo}`, "bucket names are 3-63 lowercase letters, digits, dots and hyphens");
  const prefix = decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, "");
  // URL() folds "a/../b" away, so look at the segments as written.
  const rawSegments = (repo.slice("s3://".length).split(/[?#]/)[0] ?? "").split("/").slice(1);
  if (rawSegments.some((s) => s === "." || s === "..") || /\/\//.test(prefix))
    throw new UsageError(`invalid prefix "${prefix}" in ${repo}`);
  const query = url.searchParams;
  for (const key of query.keys())
    if (!["endpoint", "region", "path-style"].includes(key))
      throw new UsageError(`unknown S3 URL option "${key}"`, "known options: endpoint, region, path-style");

  const layers = s3Layers(flags, query, env, fallback, profile);
  const endpointRaw = pickLayer(layers.endpoint)?.value ?? "";
  const region = pickLayer(layers.region)?.value ?? "us-east-1";
  let endpoint: string;
  let isAws = false;
  if (endpointRaw) {
    const withScheme = /^https?:\/\//i.test(endpointRaw) ? endpointRaw : `https://${endpointRaw}`;
    let parsed: URL;
    try {
      parsed = new URL(withScheme);
    } catch {
      throw new UsageError(`invalid S3 endpoint ${endpointRaw}`);
    }
    endpoint = `${parsed.protocol}//${parsed.host}${parsed.pathname.replace(/\/+$/, "")}`;
    isAws = /(^|\.)amazonaws\.com$/i.test(parsed.hostname);
  } else {
    endpoint = `https://s3.${region}.amazonaws.com`;
    isAws = true;
  }
  // URL() has already read any IPv4 form as dotted decimal and bracketed IPv6 (node:net's isIP would
  // cost every command's start 3 ms).
  const host = new URL(endpoint).hostname;
  const ipOrLocal = host.startsWith("[") || /^\d+\.\d+\.\d+\.\d+$/.test(host) || host === "localhost" || host.endsWith(".localhost");
  const requested = requestedPathStyle(flags, query, fallback);
  // A bucket cannot be a subdomain of an IP address or localhost: those are always path-style.
  const pathStyle = ipOrLocal ? true : (requested ?? !isAws);
  if (pathStyle === false && bucket.includes(".") && endpoint.startsWith("https:"))
    throw new UsageError(`bucket ${bucket} contains dots, which break TLS with virtual-hosted addressing`, "add ?path-style=true");
  return { bucket, prefix, endpoint, region, pathStyle };
}

/** Where the endpoint and region may come from, highest first (README "Repositories"); the first that gives one decides. */
function s3Layers(
  flags: S3Flags,
  query: URLSearchParams,
  env: Env,
  fallback: S3Flags,
  profile: ProfileSettings,
): { endpoint: Layer<string>[]; region: Layer<string>[] } {
  // The SDKs ignore AWS_ENDPOINT_URL* too when told to; SQLITE_VAULT_S3_ENDPOINT is ours alone.
  const awsEndpoints: Env = env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS?.toLowerCase() === "true" ? {} : env;
  return {
    endpoint: [
      { from: "--endpoint", value: flags.endpoint },
      { from: "endpoint in the repository URL", value: query.get("endpoint") },
      { from: "SQLITE_VAULT_S3_ENDPOINT", value: env.SQLITE_VAULT_S3_ENDPOINT },
      { from: "AWS_ENDPOINT_URL_S3", value: awsEndpoints.AWS_ENDPOINT_URL_S3 },
      { from: "AWS_ENDPOINT_URL", value: awsEndpoints.AWS_ENDPOINT_URL },
      { from: "endpoint in the config file", value: fallback.endpoint },
      { from: `endpoint_url in ${profile.file}`, value: profile.endpoint },
    ],
    region: [
      { from: "--region", value: flags.region },
      { from: "region in the repository URL", value: query.get("region") },
      { from: "AWS_REGION", value: env.AWS_REGION },
      { from: "AWS_DEFAULT_REGION", value: env.AWS_DEFAULT_REGION },
      { from: "region in the config file", value: fallback.region },
      { from: `region in ${profile.file}`, value: profile.region },
    ],
  };
}

/** The addressing asked for, if any: --path-style / --no-path-style, the URL's path-style, the config file. Throws UsageError for a bad URL value. */
function requestedPathStyle(flags: S3Flags, query: URLSearchParams, fallback: S3Flags): boolean | undefined {
  const inQuery = query.get("path-style");
  if (inQuery !== null && inQuery !== "true" && inQuery !== "false")
    throw new UsageError(`path-style must be true or false, not "${inQuery}"`);
  return pickLayer([
    { from: "--path-style", value: flags.pathStyle },
    { from: "path-style in the repository URL", value: inQuery === null ? undefined : inQuery === "true" },
    { from: "path-style in the config file", value: fallback.pathStyle },
  ])?.value;
}

export interface OpenStorageOptions extends S3Flags {
  env?: Env;
  /** A local repository's create() makes missing parent directories too: only for the embedded default. */
  createParents?: boolean;
  /** S3 settings from the config file: used when flags, the URL and the environment give none. */
  fallback?: S3Flags;
  partSize?: number;
  partConcurrency?: number;
  retries?: number;
  timeoutMs?: number;
  /** Told about each retry, for the log. */
  onRetry?: (message: string) => void;
  /** Told about a setting that cannot take effect. */
  onWarning?: (message: string) => void;
  /** The run's signal: a network backend aborts every request and every wait between retries on it. */
  signal?: AbortSignal;
}

/** Open the storage for a repo URL. Does not contact the storage; throws UsageError for bad URLs or credentials setup. */
export function openStorage(repo: string, options: OpenStorageOptions = {}): Storage {
  const env = options.env ?? process.env;
  const profile = repo.startsWith("s3://") ? readProfileSettings(env) : {};
  const location = resolveRepo(repo, options, env, process.cwd(), options.fallback, profile);
  if (location.kind === "file") return openFileStorage(location.path, options.createParents === true);
  if (requestedPathStyle(options, new URL(repo).searchParams, options.fallback ?? {}) === false && location.config.pathStyle)
    options.onWarning?.(
      `virtual-hosted addressing (--no-path-style) is ignored for ${new URL(location.config.endpoint).hostname}: a bucket cannot be a subdomain of an IP address or localhost, so requests are path-style`,
    );
  return new S3Storage({
    ...location.config,
    credentials: resolveCredentials(env),
    partSize: options.partSize,
    partConcurrency: options.partConcurrency,
    retry: { retries: options.retries, timeoutMs: options.timeoutMs },
    onRetry: options.onRetry,
    signal: options.signal,
  });
}

/** A local directory, with the capability to remove the directory its create() made. */
function openFileStorage(path: string, createParents: boolean): Storage {
  const storage = new FileStorage(path, { createParents });
  return Object.assign(storage, { removeIfEmpty: () => rmdir(storage.root) });
}

/** A repo URL fit to print: never user info, never a query value that could carry a secret. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@]*@/, "//");
}
