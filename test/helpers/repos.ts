/** Test repositories on both backends, each in fresh space, with what a test needs to reach them. */
import { join } from "node:path";
import { openStorage } from "../../src/storage/index.ts";
import type { Storage } from "../../src/storage/types.ts";
import { tempDir } from "./db.ts";
import { s3Env, s3RepoUrl } from "./s3.ts";

export interface TestRepo {
  /** The --repo URL. */
  url: string;
  /** Environment the binary needs to reach it (credentials for S3). */
  env: Record<string, string>;
  /** The same repository, opened in the test process (for inspection and tampering). */
  storage: Storage;
  /** A scratch directory for databases and restores. */
  dir: string;
  /** A database path inside dir (not created). */
  db: string;
  /** The key prefix inside the bucket ("" for a local repository). */
  prefix: string;
}

export function localRepo(label: string): TestRepo {
  const dir = tempDir(label);
  const url = join(dir, "repo");
  return { url, env: {}, storage: openStorage(url), dir, db: join(dir, "app.db"), prefix: "" };
}

export function s3Repo(bucket: string, label: string): TestRepo {
  const dir = tempDir(label);
  const prefix = `${label}-${Math.random().toString(36).slice(2, 10)}`;
  const url = s3RepoUrl(bucket, prefix);
  const env = s3Env();
  return { url, env, storage: openStorage(url, { env }), dir, db: join(dir, "app.db"), prefix };
}

/**
 * The same storage with some methods replaced: to record calls, or to make another party's step (a
 * prune, a concurrent backup) happen at a chosen moment. The others go to the real storage.
 */
export function overriding(storage: Storage, methods: Partial<Storage>): Storage {
  return Object.assign(Object.create(Object.getPrototypeOf(storage)), storage, methods);
}
