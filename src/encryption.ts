/**
 * Encryption at rest with age (the age-encryption package), so any backup can also be decrypted with
 * the `age` command-line tool. The stored object is the compressed database, encrypted:
 *   backup:  database -> compress -> age encrypt (to X25519 recipients, or an scrypt passphrase)
 *   restore: age decrypt (identities or passphrase) -> decompress -> database
 * The machine that backs up needs only public keys. Secrets (identities, passphrases) come from files
 * or the environment; they are never logged, printed, or written into a manifest.
 */
import * as age from "age-encryption";
import { readFileSync, statSync } from "node:fs";
import { AuthError, UsageError } from "./errors.ts";
import type { Logger } from "./logger.ts";
import type { Env } from "./storage/credentials.ts";

export interface EncryptionSettings {
  /** age X25519 recipients (public keys, "age1…"). */
  recipients: string[];
  /** A passphrase for scrypt mode (exclusive with recipients). */
  passphrase?: string;
}

export interface DecryptionSettings {
  identities: string[];
  passphrases: string[];
}

/** What a manifest records about encryption: never an identity or a passphrase. */
export interface ManifestEncryption {
  method: "age";
  mode: "recipients" | "passphrase";
  recipients: string[];
}

export interface EncryptionFlags {
  recipients: string[];
  recipientsFile?: string;
  passphrase?: string;
  passphraseFile?: string;
}

/** Keys named in the config file: the lowest layer, under flags and the environment. */
export interface FileKeys {
  recipients?: string[];
  recipientsFile?: string;
  passphraseFile?: string;
  identityFiles?: string[];
}

export interface DecryptionFlags {
  identities: string[];
  passphrase?: string;
  passphraseFile?: string;
}

/**
 * Resolve what to encrypt to, from flags and the environment (SQLITE_VAULT_RECIPIENTS,
 * SQLITE_VAULT_RECIPIENTS_FILE, SQLITE_VAULT_PASSPHRASE, SQLITE_VAULT_PASSPHRASE_FILE). Returns null
 * when nothing asks for encryption. Throws UsageError for invalid keys or files.
 */
export function resolveEncryption(flags: EncryptionFlags, env: Env, log: Logger, file: FileKeys = {}): EncryptionSettings | null {
  const recipients = [...flags.recipients];
  if (!recipients.length && env.SQLITE_VAULT_RECIPIENTS) recipients.push(...env.SQLITE_VAULT_RECIPIENTS.split(/[\s,]+/).filter(Boolean));
  const recipientsFile = flags.recipientsFile || env.SQLITE_VAULT_RECIPIENTS_FILE || (recipients.length ? undefined : file.recipientsFile);
  if (!recipients.length && !recipientsFile && file.recipients) recipients.push(...file.recipients);
  if (recipientsFile) recipients.push(...readKeyLines(recipientsFile, "recipients file"));
  const passphrase = resolvePassphrase(flags, env, log, recipients.length ? undefined : file.passphraseFile);
  if (recipients.length && passphrase !== undefined) throw new UsageError("use either recipients or a passphrase, not both");
  for (const r of recipients) {
    if (r.startsWith("AGE-SECRET-KEY")) throw new UsageError("a recipient is a public key (age1…); that was a secret identity", "keep identities off the machine that backs up; pass the public key");
    try {
      new age.Encrypter().addRecipient(r);
    } catch {
      throw new UsageError(`"${r.slice(0, 12)}…" is not an age recipient`, "recipients look like age1… (sqlite-vault keygen prints one)");
    }
  }
  if (recipients.length) return { recipients: [...new Set(recipients)] };
  if (passphrase !== undefined) return { recipients: [], passphrase };
  return null;
}

/** Resolve identities and passphrases for reading encrypted backups (SQLITE_VAULT_IDENTITY_FILE, …). */
export function resolveDecryption(flags: DecryptionFlags, env: Env, log: Logger, file: FileKeys = {}): DecryptionSettings {
  const identities: string[] = [];
  const sources = flags.identities.length ? flags.identities : env.SQLITE_VAULT_IDENTITY_FILE ? env.SQLITE_VAULT_IDENTITY_FILE.split(":") : (file.identityFiles ?? []);
  for (const source of sources) {
    if (source.startsWith("AGE-SECRET-KEY-")) {
      log.warn("an identity given on the command line is visible in the process list; use --identity FILE");
      identities.push(source);
      continue;
    }
    warnIfReadableByOthers(source, log);
    identities.push(...readKeyLines(source, "identity file").filter((line) => line.startsWith("AGE-SECRET-KEY-")));
  }
  const passphrase = resolvePassphrase(flags, env, log, file.passphraseFile);
  return { identities, passphrases: passphrase === undefined ? [] : [passphrase] };
}

function resolvePassphrase(flags: { passphrase?: string; passphraseFile?: string }, env: Env, log: Logger, fileFallback?: string): string | undefined {
  if (flags.passphrase !== undefined && flags.passphrase !== "") {
    log.warn("a passphrase given on the command line is visible in the process list; use --passphrase-file or SQLITE_VAULT_PASSPHRASE");
    return flags.passphrase;
  }
  const file = flags.passphraseFile || env.SQLITE_VAULT_PASSPHRASE_FILE;
  if (file) {
    warnIfReadableByOthers(file, log);
    const text = readSecretFile(file, "passphrase file").replace(/\r?\n$/, "");
    if (!text) throw new UsageError(`the passphrase file ${file} is empty`);
    return text;
  }
  if (env.SQLITE_VAULT_PASSPHRASE) return env.SQLITE_VAULT_PASSPHRASE;
  if (fileFallback) return resolvePassphrase({ passphraseFile: fileFallback }, {}, log);
  return undefined;
}

/** Encrypt a stream for the manifest's recipients or passphrase. */
export async function encryptStream(input: ReadableStream<Uint8Array>, settings: EncryptionSettings): Promise<ReadableStream<Uint8Array>> {
  const encrypter = new age.Encrypter();
  if (settings.passphrase !== undefined) encrypter.setPassphrase(settings.passphrase);
  else for (const r of settings.recipients) encrypter.addRecipient(r);
  return encrypter.encrypt(input);
}

/** The manifest's record of how a backup is encrypted. */
export function describeEncryption(settings: EncryptionSettings): ManifestEncryption {
  return settings.passphrase !== undefined ? { method: "age", mode: "passphrase", recipients: [] } : { method: "age", mode: "recipients", recipients: settings.recipients };
}

export class NoMatchingIdentityError extends AuthError {}

/**
 * Decrypt a stream. Resolves once the header is read; throws NoMatchingIdentityError when no identity
 * or passphrase opens it (the caller tells a wrong key from a damaged header by the stored checksum).
 * Errors later in the stream ("invalid tag") mean the ciphertext was tampered with.
 */
export async function decryptStream(input: ReadableStream<Uint8Array>, settings: DecryptionSettings, what: string): Promise<ReadableStream<Uint8Array>> {
  if (!settings.identities.length && !settings.passphrases.length)
    throw new AuthError(`${what} is encrypted and no identity or passphrase was given`, "pass --identity FILE or --passphrase-file FILE (or SQLITE_VAULT_IDENTITY_FILE / SQLITE_VAULT_PASSPHRASE)");
  const decrypter = new age.Decrypter();
  for (const identity of settings.identities) decrypter.addIdentity(identity);
  for (const passphrase of settings.passphrases) decrypter.addPassphrase(passphrase);
  try {
    return await decrypter.decrypt(input);
  } catch (error) {
    if (/no identity matched/i.test((error as Error).message))
      throw new NoMatchingIdentityError(`none of the given identities or passphrases can decrypt ${what}`, "check --identity / --passphrase-file: a backup opens only with a key it was encrypted to");
    throw error;
  }
}

/** A new X25519 identity file's text (as age-keygen writes it) and its public key. */
export async function generateIdentityFile(now = new Date()): Promise<{ text: string; recipient: string }> {
  const identity = await age.generateX25519Identity();
  const recipient = await age.identityToRecipient(identity);
  return { text: `# created: ${now.toISOString().replace(/\.\d+Z$/, "Z")}\n# public key: ${recipient}\n${identity}\n`, recipient };
}

function readKeyLines(path: string, what: string): string[] {
  return readSecretFile(path, what)
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
}

function readSecretFile(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`cannot read the ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

function warnIfReadableByOthers(path: string, log: Logger): void {
  const info = statSync(path, { throwIfNoEntry: false });
  if (info && info.mode & 0o077) log.warn(`${path} is readable by group or others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`);
}
