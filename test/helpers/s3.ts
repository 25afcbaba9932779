/**
 * The real S3 server for tests (Ceph RGW started by scripts/s3-server.sh). Tests that need it fail,
 * never skip, when it is not configured or not answering.
 */
import { afterAll, beforeAll } from "bun:test";
import { S3Client } from "@bradenmacdonald/s3-lite-client";
import { removeTempDirs } from "./db.ts";
import { startFaultProxy, type FaultProxy } from "./fault-proxy.ts";
import { registerSecret } from "./cli.ts";

export interface TestS3 {
  endpoint: string;
  accessKey: string;
  secretKey: string;
  region: string;
}

export function testS3(): TestS3 {
  const endpoint = process.env.SQLITE_VAULT_TEST_S3_ENDPOINT;
  const accessKey = process.env.SQLITE_VAULT_TEST_S3_ACCESS_KEY;
  const secretKey = process.env.SQLITE_VAULT_TEST_S3_SECRET_KEY;
  if (!endpoint || !accessKey || !secretKey)
    throw new Error(
      'the test S3 server is not configured: run the suite with scripts/test.sh, or `eval "$(scripts/s3-server.sh start)"` first',
    );
  return { endpoint, accessKey, secretKey, region: process.env.SQLITE_VAULT_TEST_S3_REGION || "us-east-1" };
}

export function adminClient(bucket?: string): S3Client {
  const s3 = testS3();
  return new S3Client({
    endPoint: s3.endpoint,
    region: s3.region,
    accessKey: s3.accessKey,
    secretKey: s3.secretKey,
    pathStyle: true,
    bucket,
  });
}

/** The environment a process needs to reach the test server with the test credentials. */
export function s3Env(overrides: Record<string, string> = {}): Record<string, string> {
  const s3 = testS3();
  registerSecret(s3.secretKey);
  if (overrides.AWS_SECRET_ACCESS_KEY) registerSecret(overrides.AWS_SECRET_ACCESS_KEY);
  return { AWS_ACCESS_KEY_ID: s3.accessKey, AWS_SECRET_ACCESS_KEY: s3.secretKey, AWS_REGION: s3.region, ...overrides };
}

/** A repo URL on the test server. */
export function s3RepoUrl(bucket: string, prefix = ""): string {
  const s3 = testS3();
  return `s3://${bucket}${prefix ? `/${prefix}` : ""}?endpoint=${encodeURIComponent(s3.endpoint)}`;
}

let counter = 0;

/** Create a fresh bucket; returns its name and a cleanup that empties and removes it. */
export async function createTestBucket(label: string): Promise<{ bucket: string; cleanup: () => Promise<void> }> {
  const bucket = `t-${label}-${process.pid}-${Date.now().toString(36)}-${counter++}`.toLowerCase().slice(0, 63);
  const client = adminClient();
  await client.makeBucket(bucket);
  return {
    bucket,
    cleanup: async () => {
      const c = adminClient(bucket);
      await abortAllUploads(bucket);
      for await (const object of c.listObjects()) await c.deleteObject(object.key);
      await c.removeBucket(bucket);
    },
  };
}

/** Incomplete multipart uploads in a bucket (keys), via ListMultipartUploads. */
export async function listUploads(bucket: string): Promise<{ key: string; uploadId: string }[]> {
  const response = await adminClient(bucket).makeRequest({ method: "GET", objectName: "", query: { uploads: "" }, returnBody: true });
  const xml = await response.text();
  return [...xml.matchAll(/<Upload>[\s\S]*?<Key>([^<]*)<\/Key>[\s\S]*?<UploadId>([^<]*)<\/UploadId>[\s\S]*?<\/Upload>/g)].map((m) => ({
    key: m[1]!,
    uploadId: m[2]!,
  }));
}

async function abortAllUploads(bucket: string): Promise<void> {
  const client = adminClient(bucket);
  for (const { key, uploadId } of await listUploads(bucket))
    await client.makeRequest({ method: "DELETE", objectName: key, query: { uploadId }, statusCode: 204 }).catch(() => {});
}

/** Start a multipart upload of `key` in a storage's bucket and prefix, upload one part, and walk away. */
export async function abandonUpload(storage: { url: string }, key: string): Promise<void> {
  const url = new URL(storage.url);
  const bucket = url.hostname;
  const prefix = url.pathname.replace(/^\/|\/$/g, "");
  const objectName = prefix ? `${prefix}/${key}` : key;
  const client = adminClient(bucket);
  const initiated = await client.makeRequest({ method: "POST", objectName, query: { uploads: "" }, returnBody: true });
  const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(await initiated.text())?.[1];
  if (!uploadId) throw new Error("no UploadId");
  await client.makeRequest({ method: "PUT", objectName, query: { partNumber: "1", uploadId }, payload: new Uint8Array(5 * 1024 * 1024) });
}

export interface TestBucket {
  /** The bucket's name (once the file's tests have started). */
  readonly bucket: string;
  /** The fault proxy in front of the server, when asked for. */
  readonly proxy: FaultProxy;
}

/**
 * The usual set-up of a test file on the real server: a fresh bucket (and a fault proxy in front of
 * the server, with `proxy`) before its tests, and after them the bucket emptied and removed, the
 * proxy stopped and the file's temp dirs removed.
 */
export function useTestBucket(label: string, options: { proxy?: boolean } = {}): TestBucket {
  let created: Awaited<ReturnType<typeof createTestBucket>> | undefined;
  let real: FaultProxy | undefined;
  const started = (): FaultProxy => {
    if (!real) throw new Error("useTestBucket: the proxy was not asked for, or the tests have not started");
    return real;
  };
  // A stable object, usable from the file's top level: it forwards to the proxy once it runs.
  const proxy: FaultProxy = {
    get url() {
      return started().url;
    },
    add: (rule) => started().add(rule),
    clear: () => started().clear(),
    get injected() {
      return started().injected;
    },
    get requests() {
      return started().requests;
    },
    stop: () => started().stop(),
  };
  beforeAll(async () => {
    created = await createTestBucket(label);
    if (options.proxy) real = await startFaultProxy(testS3().endpoint);
  });
  afterAll(async () => {
    await real?.stop();
    await created?.cleanup();
    removeTempDirs();
  });
  return {
    get bucket() {
      if (!created) throw new Error("useTestBucket: the tests have not started");
      return created.bucket;
    },
    proxy,
  };
}
