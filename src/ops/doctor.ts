/**
 * doctor: probe a repository the way a backup would, and say how to fix what fails. Everything it
 * writes lives under a fresh "sqlite-vault-doctor-…/" prefix and is removed again, whatever happens.
 */
import type { RunContext } from "../context.ts";
import { AuthError, ExitCode, toVaultError, type VaultError } from "../errors.ts";
import { rmdir } from "node:fs/promises";
import { FileStorage } from "../storage/file.ts";
import { S3Storage } from "../storage/s3.ts";
import type { Storage } from "../storage/types.ts";
import { readAll } from "../util/streams.ts";

export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
}

export interface DoctorReport {
  repo: string;
  ok: boolean;
  checks: DoctorCheck[];
  /** The exit code of the first failure (0 when every check passed). */
  exitCode: number;
}

export interface DoctorInput {
  /** For S3: the same repository addressed the other way, to tell which addressing works. */
  openOtherAddressing?: () => Storage;
  /** Size of the multipart probe: one byte more than a part, so it goes up in two parts. */
  partSize: number;
}

/** Largest clock difference S3 accepts is 15 minutes; warn well before. */
const SKEW_FAIL_MS = 15 * 60_000;
const SKEW_WARN_MS = 60_000;

export async function runDoctor(storage: Storage, input: DoctorInput, ctx: RunContext): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  let exitCode: number = ExitCode.ok;
  const pass = (name: string, detail: string) => checks.push({ name, ok: true, detail });
  const fail = (name: string, detail: string, fix: string, code: number = ExitCode.failure) => {
    checks.push({ name, ok: false, detail, fix });
    if (exitCode === ExitCode.ok) exitCode = code;
  };
  const report = (): DoctorReport => ({ repo: storage.url, ok: checks.every((c) => c.ok), checks, exitCode });
  const s3 = storage instanceof S3Storage ? storage : undefined;

  // 1. Reachable, credentials, bucket (or directory).
  let created = false;
  try {
    // A local repository that does not exist yet is what the first backup creates: so does doctor.
    created = !s3 && (await storage.check().then(() => false, () => true));
    await storage.check({ create: created });
    if (created) pass("repository directory exists", `${storage.url} does not exist yet; the first backup creates it (created for this probe, and removed again)`);
    else if (s3) {
      pass("endpoint reachable", `${storage.url} answers`);
      pass("credentials accepted", s3.credentialSource ? `a signed request succeeded (credentials from ${s3.credentialSource})` : "anonymous requests work (no credentials were found)");
      pass("bucket exists", "listing the prefix works");
      pass("addressing", `${s3.addressing} requests work`);
    } else pass("repository directory exists", storage.url);
  } catch (thrown) {
    const error = toVaultError(thrown);
    if (error instanceof AuthError) fail("credentials accepted", error.message, error.hint ?? "check the access key and secret", ExitCode.auth);
    else if (s3 && /does not exist/.test(error.message)) fail("bucket exists", error.message, error.hint ?? "create the bucket", ExitCode.storage);
    else if (s3) {
      const other = await tryOtherAddressing(input);
      if (other) fail("addressing", `${s3.addressing} requests fail (${error.message}); ${other} requests work`, `add ?path-style=${other === "path-style"} to the repository URL`, ExitCode.storage);
      else fail("endpoint reachable", error.message, error.hint ?? "check the endpoint URL and the network", error.exitCode);
    } else fail("repository directory exists", error.message, error.hint ?? "create the directory", error.exitCode);
    return report();
  }

  // 2. The clock, which S3 signatures depend on.
  if (s3) {
    try {
      const server = await s3.serverTime();
      if (!server) pass("clock", "the server sends no Date header; not checked");
      else {
        const skew = Date.now() - server.getTime();
        const text = `${Math.abs(Math.round(skew / 1000))} s ${skew >= 0 ? "ahead of" : "behind"} the server`;
        if (Math.abs(skew) > SKEW_FAIL_MS) fail("clock", `this machine's clock is ${text}`, "sync the clock (NTP); S3 refuses requests more than 15 minutes off", ExitCode.auth);
        else pass("clock", Math.abs(skew) > SKEW_WARN_MS ? `${text}: sync the clock before it drifts further` : text);
      }
    } catch (thrown) {
      fail("clock", toVaultError(thrown).message, "check the endpoint", toVaultError(thrown).exitCode);
    }
  }

  // 3. The operations a backup, restore and prune make, on a probe of our own.
  const probe = `sqlite-vault-doctor-${crypto.randomUUID().slice(0, 12)}`;
  const small = `${probe}/probe.bin`;
  const large = `${probe}/multipart.bin`;
  const bytes = crypto.getRandomValues(new Uint8Array(1024));
  const step = async (name: string, detail: string, fix: string, run: () => Promise<boolean | string>) => {
    try {
      const result = await run();
      if (result === true) pass(name, detail);
      else fail(name, typeof result === "string" ? result : `${detail}: failed`, fix);
      return result === true;
    } catch (thrown) {
      const error: VaultError = toVaultError(thrown);
      fail(name, error.message, error instanceof AuthError ? `${error.hint ?? ""}; the credentials need s3:PutObject, s3:GetObject, s3:ListBucket and s3:DeleteObject on the prefix`.replace(/^; /, "") : (error.hint ?? fix), error.exitCode);
      return false;
    }
  };
  try {
    const put = await step("put", `wrote ${small}`, "allow writes under the prefix", async () => {
      await storage.put(small, bytes, { signal: ctx.signal });
      return true;
    });
    if (!put) return report();
    await step("head", "its size reads back", "the storage reports a different size than was written", async () => (await storage.stat(small))?.size === bytes.byteLength || "the size read back differs");
    await step("get", "its bytes read back identical", "the storage returns different bytes than were written", async () => Buffer.from(await readAll(await storage.get(small))).equals(Buffer.from(bytes)) || "the bytes read back differ");
    await step("list", "it is listed", "allow listing the bucket (s3:ListBucket) under the prefix", async () => {
      for await (const o of storage.list(`${probe}/`)) if (o.key === small) return true;
      return "the object written is not listed";
    });
    if (s3)
      await step("multipart upload", `a two-part upload of ${input.partSize + 1} bytes`, "allow multipart uploads (s3:PutObject, s3:AbortMultipartUpload)", async () => {
        const data = new Uint8Array(input.partSize + 1);
        await storage.put(large, new Blob([data]).stream(), { signal: ctx.signal });
        return (await storage.stat(large))?.size === data.byteLength || "the multipart object has the wrong size";
      });
    await step("delete really deletes", "deleted objects are gone from HEAD and from a listing", "the storage acknowledges deletes without deleting (object lock, versioning or a proxy): prune could not free space", async () => {
      await storage.delete([small, large]);
      if (await storage.stat(small)) return "a deleted object still answers HEAD";
      for await (const o of storage.list(`${probe}/`)) return `a deleted object is still listed: ${o.key}`;
      return true;
    });
  } finally {
    await cleanUp(storage, probe, [small, large]);
    // A local repository created for the probe goes too: doctor leaves the storage as it found it.
    if (created && storage instanceof FileStorage) await rmdir(storage.root).catch(() => {});
  }
  return report();
}

async function tryOtherAddressing(input: DoctorInput): Promise<string | null> {
  if (!input.openOtherAddressing) return null;
  try {
    const other = input.openOtherAddressing();
    await other.check();
    return other instanceof S3Storage ? other.addressing : null;
  } catch {
    return null;
  }
}

async function cleanUp(storage: Storage, probe: string, keys: string[]): Promise<void> {
  await storage.delete(keys).catch(() => {});
  try {
    for await (const write of storage.listPartialWrites(`${probe}/`)) await storage.abortPartialWrite(write).catch(() => {});
  } catch {}
}
