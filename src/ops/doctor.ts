/**
 * doctor: probe a repository the way a backup would, and say how to fix what fails. Everything it
 * writes lives under a fresh "sqlite-vault-doctor-…/" prefix and is removed again, whatever happens.
 */
import type { RunContext } from "../context.ts";
import { AuthError, ExitCode, toVaultError, type VaultError } from "../errors.ts";
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

/** The checks made so far, and the exit code of the first failure. */
class Checks {
  readonly list: DoctorCheck[] = [];
  exitCode: number = ExitCode.ok;

  pass(name: string, detail: string): void {
    this.list.push({ name, ok: true, detail });
  }

  fail(name: string, detail: string, fix: string, code: number = ExitCode.failure): void {
    this.list.push({ name, ok: false, detail, fix });
    if (this.exitCode === ExitCode.ok) this.exitCode = code;
  }
}

/**
 * Probe the repository: reachability and credentials, the clock (network storage), then put, head,
 * get, list, multipart upload (network storage) and delete on a probe of its own. Never throws for a
 * failed check: each is reported with a fix, and the report carries the first failure's exit code.
 */
export async function runDoctor(storage: Storage, input: DoctorInput, ctx: RunContext): Promise<DoctorReport> {
  const checks = new Checks();
  const report = (): DoctorReport => ({
    repo: storage.url,
    ok: checks.list.every((c) => c.ok),
    checks: checks.list,
    exitCode: checks.exitCode,
  });
  const created = await checkRepository(storage, input, checks);
  if (created === undefined) return report();
  if (storage.addressing !== undefined) await checkClock(storage, checks);
  const probe = `sqlite-vault-doctor-${crypto.randomUUID().slice(0, 12)}`;
  try {
    await probeOperations(storage, probe, input, checks, ctx);
  } finally {
    await cleanUp(storage, probe, [`${probe}/probe.bin`, `${probe}/multipart.bin`]);
    // A local repository created for the probe goes too: doctor leaves the storage as it found it.
    if (created) await storage.removeIfEmpty?.().catch(() => {});
  }
  return report();
}

/** Reachable, credentials, bucket (or directory). Resolves whether it created the repository, undefined when a check failed. */
async function checkRepository(storage: Storage, input: DoctorInput, checks: Checks): Promise<boolean | undefined> {
  const network = storage.addressing !== undefined;
  let created = false;
  try {
    // A local repository that does not exist yet is what the first backup creates: so does doctor.
    created =
      !network &&
      (await storage.check().then(
        () => false,
        () => true,
      ));
    await (created ? storage.create?.() : storage.check());
    if (created)
      checks.pass(
        "repository directory exists",
        `${storage.url} does not exist yet; the first backup creates it (created for this probe, and removed again)`,
      );
    else if (network) {
      checks.pass("endpoint reachable", `${storage.url} answers`);
      checks.pass(
        "credentials accepted",
        storage.credentialSource
          ? `a signed request succeeded (credentials from ${storage.credentialSource})`
          : "anonymous requests work (no credentials were found)",
      );
      checks.pass("bucket exists", "listing the prefix works");
      checks.pass("addressing", `${storage.addressing} requests work`);
    } else checks.pass("repository directory exists", storage.url);
    return created;
  } catch (thrown) {
    const error = toVaultError(thrown);
    if (error instanceof AuthError)
      checks.fail("credentials accepted", error.message, error.hint ?? "check the access key and secret", ExitCode.auth);
    else if (network && /does not exist/.test(error.message))
      checks.fail("bucket exists", error.message, error.hint ?? "create the bucket", ExitCode.storage);
    else if (network) {
      const other = await tryOtherAddressing(input);
      if (other)
        checks.fail(
          "addressing",
          `${storage.addressing} requests fail (${error.message}); ${other} requests work`,
          `add ?path-style=${other === "path-style"} to the repository URL`,
          ExitCode.storage,
        );
      else checks.fail("endpoint reachable", error.message, error.hint ?? "check the endpoint URL and the network", error.exitCode);
    } else checks.fail("repository directory exists", error.message, error.hint ?? "create the directory", error.exitCode);
    return undefined;
  }
}

/** The clock, which S3 signatures depend on. */
async function checkClock(storage: Storage, checks: Checks): Promise<void> {
  try {
    const server = await storage.serverTime?.();
    if (!server) checks.pass("clock", "the server sends no Date header; not checked");
    else {
      const skew = Date.now() - server.getTime();
      const text = `${Math.abs(Math.round(skew / 1000))} s ${skew >= 0 ? "ahead of" : "behind"} the server`;
      if (Math.abs(skew) > SKEW_FAIL_MS)
        checks.fail(
          "clock",
          `this machine's clock is ${text}`,
          "sync the clock (NTP); S3 refuses requests more than 15 minutes off",
          ExitCode.auth,
        );
      else checks.pass("clock", Math.abs(skew) > SKEW_WARN_MS ? `${text}: sync the clock before it drifts further` : text);
    }
  } catch (thrown) {
    checks.fail("clock", toVaultError(thrown).message, "check the endpoint", toVaultError(thrown).exitCode);
  }
}

/** The operations a backup, restore and prune make, on objects under `probe`/. The caller removes them. */
async function probeOperations(storage: Storage, probe: string, input: DoctorInput, checks: Checks, ctx: RunContext): Promise<void> {
  const small = `${probe}/probe.bin`;
  const large = `${probe}/multipart.bin`;
  const bytes = crypto.getRandomValues(new Uint8Array(1024));
  const step = async (name: string, detail: string, fix: string, run: () => Promise<boolean | string>) => {
    try {
      const result = await run();
      if (result === true) checks.pass(name, detail);
      else checks.fail(name, typeof result === "string" ? result : `${detail}: failed`, fix);
      return result === true;
    } catch (thrown) {
      const error: VaultError = toVaultError(thrown);
      checks.fail(
        name,
        error.message,
        error instanceof AuthError
          ? `${error.hint ?? ""}; the credentials need s3:PutObject, s3:GetObject, s3:ListBucket and s3:DeleteObject on the prefix`.replace(
              /^; /,
              "",
            )
          : (error.hint ?? fix),
        error.exitCode,
      );
      return false;
    }
  };
  const put = await step("put", `wrote ${small}`, "allow writes under the prefix", async () => {
    await storage.put(small, bytes, { signal: ctx.signal });
    return true;
  });
  if (!put) return;
  await step(
    "head",
    "its size reads back",
    "the storage reports a different size than was written",
    async () => (await storage.stat(small))?.size === bytes.byteLength || "the size read back differs",
  );
  await step(
    "get",
    "its bytes read back identical",
    "the storage returns different bytes than were written",
    async () => Buffer.from(await readAll(await storage.get(small))).equals(Buffer.from(bytes)) || "the bytes read back differ",
  );
  await step("list", "it is listed", "allow listing the bucket (s3:ListBucket) under the prefix", async () => {
    for await (const o of storage.list(`${probe}/`)) if (o.key === small) return true;
    return "the object written is not listed";
  });
  if (storage.addressing !== undefined)
    await step(
      "multipart upload",
      `a two-part upload of ${input.partSize + 1} bytes`,
      "allow multipart uploads (s3:PutObject, s3:AbortMultipartUpload)",
      async () => {
        const data = new Uint8Array(input.partSize + 1);
        await storage.put(large, new Blob([data]).stream(), { signal: ctx.signal });
        return (await storage.stat(large))?.size === data.byteLength || "the multipart object has the wrong size";
      },
    );
  await step(
    "delete really deletes",
    "deleted objects are gone from HEAD and from a listing",
    "the storage acknowledges deletes without deleting (object lock, versioning or a proxy): prune could not free space",
    async () => {
      await storage.delete([small, large]);
      if (await storage.stat(small)) return "a deleted object still answers HEAD";
      for await (const o of storage.list(`${probe}/`)) return `a deleted object is still listed: ${o.key}`;
      return true;
    },
  );
}

async function tryOtherAddressing(input: DoctorInput): Promise<string | null> {
  if (!input.openOtherAddressing) return null;
  try {
    const other = input.openOtherAddressing();
    await other.check();
    return other.addressing ?? null;
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
