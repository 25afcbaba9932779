/**
 * AWS credentials and profile settings, found the way every AWS tool finds them.
 *
 * Static keys in the environment are used as they are (no library loaded: the common case starts
 * fast). Everything else is the AWS SDK's own default chain, loaded only when needed: the shared
 * credentials and config files (static keys, role_arn with source_profile or credential_source,
 * credential_process, SSO, web identity), AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, the container
 * credentials endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / FULL_URI) and EC2 instance metadata
 * (IMDSv2). Its provider is memoized and refreshed five minutes before temporary credentials expire.
 * The profile's endpoint_url (or its services section's s3 endpoint_url) and region are read here too.
 */
import { realpathSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { AuthError, UsageError } from "../errors.ts";
import { NotASmallFileError, readSmallFile, SMALL_FILE_LIMIT } from "../local/small-file.ts";

export type Env = Record<string, string | undefined>;

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** When temporary credentials stop working. */
  expiration?: Date;
  /** Where they came from, for messages ("the environment", "EC2 instance metadata (IMDS)"). */
  source: string;
}

/**
 * Credentials on demand. `get()` returns the same object until the credentials change (refreshed
 * before they expire), null for anonymous requests; it throws AuthError when a configured source
 * fails (a role that cannot be assumed, a credential_process that exits non-zero).
 */
export interface CredentialProvider {
  get(): Promise<S3Credentials | null>;
}

/**
 * The provider for `env`. Throws UsageError at once for half a key pair in the environment or an
 * AWS_PROFILE that neither shared file defines.
 */
export function resolveCredentials(env: Env, readFile: (path: string) => string | null = readTextFile): CredentialProvider {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (accessKeyId && secretAccessKey) {
    const fixed: S3Credentials = {
      accessKeyId,
      secretAccessKey,
      sessionToken: env.AWS_SESSION_TOKEN || undefined,
      source: "the environment",
    };
    return { get: async () => fixed };
  }
  if (accessKeyId || secretAccessKey)
    throw new UsageError(
      "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set",
      "set both, or neither to use a profile or the instance's role",
    );
  const profile = env.AWS_PROFILE || "default";
  // The SDK reads the shared files whole, without asking what they are.
  for (const file of sharedFiles(env)) assertReadableWhole(file);
  if (env.AWS_PROFILE) {
    const files = sharedFiles(env);
    if (!files.some((file) => parseIni(readFile(file) ?? "")[profile]))
      throw new UsageError(
        `AWS_PROFILE is ${profile}, but neither ${files.join(" nor ")} defines it`,
        "check the profile's name, or AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE",
      );
  }
  return sdkChain(
    profile,
    Boolean(env.AWS_PROFILE),
    Boolean(env.AWS_CONTAINER_CREDENTIALS_FULL_URI || env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI),
  );
}

/**
 * The SDK's providers, imported on first use. A profile named by AWS_PROFILE is the only source, as
 * with the AWS CLI's --profile, so its failure is an error; otherwise the default chain, and a chain
 * that finds nothing means anonymous requests.
 */
function sdkChain(profile: string, explicit: boolean, container: boolean): CredentialProvider {
  let provider: (() => Promise<SdkCredentials>) | undefined;
  let last: { from: SdkCredentials; ours: S3Credentials } | undefined;
  return {
    async get() {
      if (!provider) {
        const { defaultProvider, credentialsTreatedAsExpired, credentialsWillNeedRefresh } = await import(
          "@aws-sdk/credential-provider-node"
        );
        if (explicit) {
          const [{ fromIni }, { memoize }] = await Promise.all([import("@aws-sdk/credential-provider-ini"), import("@smithy/core/config")]);
          provider = memoize(fromIni({ profile }), credentialsTreatedAsExpired, credentialsWillNeedRefresh);
        } else provider = defaultProvider({ profile });
      }
      let found: SdkCredentials;
      try {
        found = await provider();
      } catch (error) {
        if (!explicit && nothingFound(error)) return null;
        throw new AuthError(
          `cannot get AWS credentials (profile ${profile}): ${firstLine(error)}`,
          "check the profile, its role or credential source; sqlite-vault doctor shows which source was used",
        );
      }
      if (last?.from !== found) {
        const source = describeSource(found, profile, container);
        last = {
          from: found,
          ours: {
            accessKeyId: found.accessKeyId,
            secretAccessKey: found.secretAccessKey,
            sessionToken: found.sessionToken,
            expiration: found.expiration,
            source,
          },
        };
      }
      return last.ours;
    },
  };
}

interface SdkCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
  $source?: Record<string, string>;
}

/** The chain's "nothing here" (as opposed to a source that is configured and fails). */
function nothingFound(error: unknown): boolean {
  return (
    error instanceof Error &&
    error.name === "CredentialsProviderError" &&
    /could not load credentials from any providers/i.test(error.message)
  );
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return (message.split("\n").find((line) => line.trim()) ?? "unknown error").trim().slice(0, 300);
}

/** The SDK marks credentials with the features that produced them; name the most specific one. */
const SOURCES: [feature: string, name: (profile: string) => string][] = [
  ["CREDENTIALS_HTTP", () => "the container credentials endpoint"],
  ["CREDENTIALS_PROFILE_STS_WEB_ID_TOKEN", (p) => `a web identity role of profile ${p}`],
  ["CREDENTIALS_ENV_VARS_STS_WEB_ID_TOKEN", () => "a web identity role (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)"],
  ["CREDENTIALS_PROFILE_SSO", (p) => `SSO of profile ${p}`],
  ["CREDENTIALS_PROFILE_SSO_LEGACY", (p) => `SSO of profile ${p}`],
  ["CREDENTIALS_PROFILE_PROCESS", (p) => `the credential_process of profile ${p}`],
  ["CREDENTIALS_PROFILE_SOURCE_PROFILE", (p) => `a role assumed by profile ${p}`],
  ["CREDENTIALS_PROFILE_NAMED_PROVIDER", (p) => `a role assumed by profile ${p}`],
  ["CREDENTIALS_STS_ASSUME_ROLE", (p) => `a role assumed by profile ${p}`],
  ["CREDENTIALS_PROFILE", (p) => `profile ${p} in the shared credentials file`],
  ["CREDENTIALS_ENV_VARS", () => "the environment"],
];

function describeSource(credentials: SdkCredentials, profile: string, container: boolean): string {
  const features = credentials.$source ?? {};
  for (const [feature, name] of SOURCES) if (feature in features) return name(profile);
  // Only the chain's last link, the instance or container metadata, leaves no mark.
  return container ? "the container credentials endpoint" : "EC2 instance metadata (IMDS)";
}

/** The shared config file and credentials file, as AWS tools name them. */
function sharedFiles(env: Env): string[] {
  const home = env.HOME || homedir();
  return [env.AWS_CONFIG_FILE || join(home, ".aws", "config"), env.AWS_SHARED_CREDENTIALS_FILE || join(home, ".aws", "credentials")];
}

export interface ProfileSettings {
  endpoint?: string;
  region?: string;
  /** Where they were read, for messages. */
  file?: string;
}

/**
 * The S3 endpoint and region the profile (AWS_PROFILE, else default) sets in the shared config file:
 * `endpoint_url` from its services section's `s3` entry, else its own; its `region`. Endpoints are
 * ignored when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true, as in the SDKs.
 */
export function readProfileSettings(env: Env, readFile: (path: string) => string | null = readTextFile): ProfileSettings {
  const file = sharedFiles(env)[0]!;
  const text = readFile(file);
  if (text === null) return {};
  const ini = parseIni(text);
  const profile = ini[env.AWS_PROFILE || "default"];
  if (!profile) return {};
  const services = profile.services ? ini[`services ${profile.services}`] : undefined;
  const ignoreEndpoints = env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS?.toLowerCase() === "true";
  const endpoint = ignoreEndpoints ? undefined : services?.["s3.endpoint_url"] || profile.endpoint_url || undefined;
  return { endpoint, region: profile.region || undefined, file };
}

/**
 * A minimal INI reader for the AWS shared files: [section] and [profile name] headers, key = value
 * lines, and indented sub-keys under an empty value (`s3 =` then `  endpoint_url = …`, read as
 * "s3.endpoint_url"); # and ; start comments.
 */
export function parseIni(text: string): Record<string, Record<string, string>> {
  const sections: Record<string, Record<string, string>> = {};
  let current: Record<string, string> | undefined;
  let parent: string | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line);
    if (header) {
      current = sections[header[1]!.replace(/\s+/g, " ")] ??= {};
      parent = undefined;
      continue;
    }
    const eq = line.indexOf("=");
    if (eq <= 0 || !current) continue;
    const key = line.slice(0, eq).trim().toLowerCase();
    const value = line.slice(eq + 1).trim();
    const indented = /^\s/.test(raw);
    if (indented && parent) current[`${parent}.${key}`] = value;
    else {
      current[key] = value;
      parent = value === "" ? key : undefined;
    }
  }
  return sections;
}

/** Anything but a small regular file counts as none: a FIFO must not block, and AWS_SHARED_CREDENTIALS_FILE=/dev/null still means no file. */
/** Refuse a shared file that exists but is no small regular file (/dev/null, "no file", is fine). */
function assertReadableWhole(path: string): void {
  const info = statSync(path, { throwIfNoEntry: false });
  if (!info || info.isFile() || (info.isCharacterDevice() && realpathSync(path) === "/dev/null")) {
    if (info && info.size > SMALL_FILE_LIMIT)
      throw new UsageError(
        `cannot read ${path}: it is larger than ${SMALL_FILE_LIMIT / 1048576} MiB, more than an AWS shared file ever holds`,
      );
    return;
  }
  try {
    readSmallFile(path);
  } catch (error) {
    if (error instanceof NotASmallFileError)
      throw new UsageError(`cannot read ${path}: ${error.message}`, "point AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE at the real file");
  }
}

/** A shared file's text, or null when it cannot be read or is no small regular file (a FIFO would hang). */
function readTextFile(path: string): string | null {
  try {
    return readSmallFile(path);
  } catch {
    return null;
  }
}
