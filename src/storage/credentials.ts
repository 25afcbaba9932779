/**
 * AWS credentials, as every AWS tool finds them: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 * AWS_SESSION_TOKEN, else the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or
 * ~/.aws/credentials) with the profile AWS_PROFILE (default "default").
 */
import { homedir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../errors.ts";
import { readSmallFile } from "../small-file.ts";
import type { S3Credentials } from "./s3.ts";

export type Env = Record<string, string | undefined>;

/** Returns null when no credentials are configured (anonymous requests). Throws UsageError for a missing profile. */
export function resolveCredentials(env: Env, readFile: (path: string) => string | null = readTextFile): S3Credentials | null {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (accessKeyId && secretAccessKey)
    return { accessKeyId, secretAccessKey, sessionToken: env.AWS_SESSION_TOKEN || undefined, source: "the environment" };
  if (accessKeyId || secretAccessKey)
    throw new UsageError("only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set", "set both, or neither to use the shared credentials file");

  const file = env.AWS_SHARED_CREDENTIALS_FILE || join(env.HOME || homedir(), ".aws", "credentials");
  const profile = env.AWS_PROFILE || "default";
  const text = readFile(file);
  if (text === null) {
    if (env.AWS_PROFILE) throw new UsageError(`AWS_PROFILE is ${profile} but ${file} cannot be read`);
    return null;
  }
  const section = parseIni(text)[profile];
  if (!section) {
    if (env.AWS_PROFILE) throw new UsageError(`profile ${profile} not found in ${file}`);
    return null;
  }
  const id = section.aws_access_key_id;
  const secret = section.aws_secret_access_key;
  if (!id || !secret) throw new UsageError(`profile ${profile} in ${file} lacks aws_access_key_id or aws_secret_access_key`);
  return { accessKeyId: id, secretAccessKey: secret, sessionToken: section.aws_session_token, source: `profile ${profile} in ${file}` };
}

/** A minimal INI reader: [section] headers and key = value lines; # and ; start comments. */
export function parseIni(text: string): Record<string, Record<string, string>> {
  const sections: Record<string, Record<string, string>> = {};
  let current: Record<string, string> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line);
    if (header) {
      current = sections[header[1]!] ??= {};
      continue;
    }
    const eq = line.indexOf("=");
    if (eq > 0 && current) current[line.slice(0, eq).trim().toLowerCase()] = line.slice(eq + 1).trim();
  }
  return sections;
}

/** Anything but a small regular file counts as none: a FIFO must not block, and AWS_SHARED_CREDENTIALS_FILE=/dev/null still means no file. */
function readTextFile(path: string): string | null {
  try {
    return readSmallFile(path);
  } catch {
    return null;
  }
}
