/**
 * Encryption at rest with age (the age-encryption package), so any backup can also be decrypted with
 * the `age` command-line tool. The stored object is the compressed database, encrypted:
 *   backup:  database -> compress -> age encrypt (to X25519 recipients, or an scrypt passphrase)
 *   restore: age decrypt (identities or passphrase) -> decompress -> database
 * The machine that backs up needs only public keys. Secrets (identities, passphrases) come from files
 * or the environment; they are never logged, printed, or written into a manifest.
 */
import { AuthError } from "../errors.ts";

/**
 * age-encryption and the cryptography under it, evaluated on first use, not at start-up: loading it
 * took about 5 ms of every run of the binary, encrypted backups or not (measured against an empty
 * program, both compiled as scripts/build.ts compiles).
 */
export function ageLibrary(): typeof import("age-encryption") {
  return require("age-encryption");
}

export interface EncryptionSettings {
  /** age X25519 recipients (public keys, "age1…"). */
  recipients: string[];
  /** A passphrase for scrypt mode (exclusive with recipients). */
  passphrase?: string;
  /** The recipients are the public keys of identity files, since no recipient or passphrase was named. */
  fromIdentities?: boolean;
}

export interface DecryptionSettings {
  identities: string[];
  passphrases: string[];
  /** Unencrypted backups may be read even though keys were given (--allow-unencrypted, or plaintext chosen at or above the keys' layer). */
  unencryptedAllowed?: boolean;
}

/** What a manifest records about encryption: never an identity or a passphrase. */
export interface ManifestEncryption {
  method: "age";
  mode: "recipients" | "passphrase";
  recipients: string[];
}

/** Encrypt a stream for the manifest's recipients or passphrase. */
export async function encryptStream(input: ReadableStream<Uint8Array>, settings: EncryptionSettings): Promise<ReadableStream<Uint8Array>> {
  const age = ageLibrary();
  const encrypter = new age.Encrypter();
  if (settings.passphrase !== undefined) encrypter.setPassphrase(settings.passphrase);
  else for (const r of settings.recipients) encrypter.addRecipient(r);
  return encrypter.encrypt(input);
}

/** The manifest's record of how a backup is encrypted. */
export function describeEncryption(settings: EncryptionSettings): ManifestEncryption {
  return settings.passphrase !== undefined
    ? { method: "age", mode: "passphrase", recipients: [] }
    : { method: "age", mode: "recipients", recipients: settings.recipients };
}

export class NoMatchingIdentityError extends AuthError {}

/**
 * Keys were given and the backup is not encrypted: the keys do not vouch for it. Whoever can write to
 * the storage can plant a plaintext backup, and a name that turned plaintext by mistake should be
 * seen, not restored quietly. A planted backup encrypted to the recipients (public, in every
 * manifest) still opens; only a passphrase keeps that out. Handled as a key mismatch.
 */
export class UnencryptedBackupError extends NoMatchingIdentityError {}

/** Keys to decrypt with were given, and an unencrypted backup was not allowed beside them. */
export function unencryptedRefused(settings: DecryptionSettings | undefined): boolean {
  return !!settings && (settings.identities.length > 0 || settings.passphrases.length > 0) && !settings.unencryptedAllowed;
}

/** A message with any age secret key in it cut down to its prefix (the age library quotes keys it cannot parse). */
export function redactSecrets(text: string): string {
  return text.replace(/AGE-SECRET-KEY-1[0-9A-Za-z]*/g, "AGE-SECRET-KEY-1…");
}

/**
 * Decrypt a stream. Resolves once the header is read; throws NoMatchingIdentityError when no identity
 * or passphrase opens it (the caller tells a wrong key from a damaged header by the stored checksum).
 * Errors later in the stream ("invalid tag") mean the ciphertext was tampered with.
 */
export async function decryptStream(
  input: ReadableStream<Uint8Array>,
  settings: DecryptionSettings,
  what: string,
): Promise<ReadableStream<Uint8Array>> {
  if (!settings.identities.length && !settings.passphrases.length)
    throw new AuthError(
      `${what} is encrypted and no identity or passphrase was given`,
      "pass --identity FILE or --passphrase-file FILE (or SQLITE_VAULT_IDENTITY_FILE / SQLITE_VAULT_PASSPHRASE)",
    );
  const age = ageLibrary();
  const decrypter = new age.Decrypter();
  for (const identity of settings.identities) decrypter.addIdentity(identity);
  for (const passphrase of settings.passphrases) decrypter.addPassphrase(passphrase);
  try {
    return await decrypter.decrypt(input);
  } catch (error) {
    if (/no identity matched/i.test((error as Error).message))
      throw new NoMatchingIdentityError(
        `none of the given identities or passphrases can decrypt ${what}`,
        "check --identity / --passphrase-file: a backup opens only with a key it was encrypted to",
      );
    throw error;
  }
}

/** A new X25519 identity file's text (as age-keygen writes it) and its public key. */
export async function generateIdentityFile(now = new Date()): Promise<{ text: string; recipient: string }> {
  const age = ageLibrary();
  const identity = await age.generateX25519Identity();
  const recipient = await age.identityToRecipient(identity);
  return { text: `# created: ${now.toISOString().replace(/\.\d+Z$/, "Z")}\n# public key: ${recipient}\n${identity}\n`, recipient };
}
