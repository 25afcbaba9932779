/**
 * Temporary credentials are refreshed during a run, before they expire: a restore of many GiB can
 * outlive a one-hour session. Against the real S3 server, with real STS credentials.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { assumeTestRole, startImds, type TempCredentials } from "../helpers/aws-credentials.ts";
import { createTestBucket, testS3 } from "../helpers/s3.ts";
import { resolveCredentials, type S3Credentials } from "../../src/storage/credentials.ts";
import { S3Storage } from "../../src/storage/s3.ts";
import { AuthError } from "../../src/errors.ts";

setDefaultTimeout(60_000);

let bucket: Awaited<ReturnType<typeof createTestBucket>>;
beforeAll(async () => {
  bucket = await createTestBucket("refresh");
});
afterAll(async () => {
  await bucket?.cleanup();
});

function storageWith(credentials: ConstructorParameters<typeof S3Storage>[0]["credentials"]): S3Storage {
  const s3 = testS3();
  return new S3Storage({
    bucket: bucket.bucket,
    prefix: "refresh",
    endpoint: s3.endpoint,
    region: s3.region,
    pathStyle: true,
    credentials,
    retry: { retries: 0 },
  });
}

describe("credential refresh", () => {
  test("each request is signed with the credentials the provider gives now", async () => {
    const good = await assumeTestRole();
    const given: S3Credentials[] = [
      { ...good, source: "the test" },
      { ...good, secretAccessKey: "not-the-secret-0123456789", source: "the test" },
    ];
    let current = given[0]!;
    const storage = storageWith({ get: async () => current });
    await storage.put("a", new Uint8Array([1]));
    current = given[1]!;
    expect(await storage.put("b", new Uint8Array([2])).catch((e) => e)).toBeInstanceOf(AuthError);
  });

  test("instance-metadata credentials about to expire are fetched again before the next request", async () => {
    const sets: TempCredentials[] = [await assumeTestRole(), await assumeTestRole()];
    let served = 0;
    // Expiring in 5 min 2 s: within 2 s they are in the last five minutes, when the SDK refreshes.
    const imds = startImds(async () => ({ ...sets[Math.min(served++, 1)]!, expiration: new Date(Date.now() + 302_000) }));
    const saved = { endpoint: process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT, disabled: process.env.AWS_EC2_METADATA_DISABLED };
    process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = imds.url;
    delete process.env.AWS_EC2_METADATA_DISABLED;
    try {
      const provider = resolveCredentials({ HOME: "/nonexistent" });
      const storage = storageWith(provider);
      await storage.put("c", new Uint8Array([3]));
      const first = await provider.get();
      expect(served).toBe(1);
      await Bun.sleep(2500);
      await storage.put("d", new Uint8Array([4]));
      expect(served).toBe(2);
      const second = await provider.get();
      expect(second?.accessKeyId).toBe(sets[1]!.accessKeyId);
      expect(second?.accessKeyId).not.toBe(first?.accessKeyId);
      expect(storage.credentialSource).toBe("EC2 instance metadata (IMDS)");
      expect(await storage.stat("d")).not.toBeNull();
    } finally {
      imds.stop();
      if (saved.endpoint === undefined) delete process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT;
      else process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = saved.endpoint;
      if (saved.disabled !== undefined) process.env.AWS_EC2_METADATA_DISABLED = saved.disabled;
    }
  });
});
