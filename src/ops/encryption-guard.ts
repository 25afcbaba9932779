/**
 * Once a backup name is encrypted, it stays so: a run that finds no key to encrypt to (a crontab
 * without SQLITE_VAULT_RECIPIENTS, a new machine given only the identity to restore with) must not
 * store the next backup in plaintext with exit 0. Only an explicit choice (--no-encryption) does.
 */
import { readListedManifest, type ManifestEntry } from "../repo/catalog.ts";
import type { EncryptionSettings } from "../pipeline/age.ts";
import { UsageError, VerificationError } from "../errors.ts";
import type { BackupManifest } from "../repo/manifest.ts";
import type { Storage } from "../storage/types.ts";

/**
 * Throws UsageError (exit 2) when the newest readable backup of `name` is encrypted and this one
 * would not be (no key and plaintext not chosen), or is passphrase-encrypted and this one would be
 * encrypted only to the identities' public keys, which cannot open it. `entries`: the name's
 * manifests, newest first (listManifests). Reads nothing when a key is named or plaintext is chosen;
 * throws the storage's errors.
 */
export async function assertEncryptionKept(
  storage: Storage,
  name: string,
  entries: ManifestEntry[],
  encryption: EncryptionSettings | null,
  plaintextChosen: boolean,
): Promise<void> {
  if (plaintextChosen || (encryption && !encryption.fromIdentities)) return;
  const newest = await newestReadable(storage, entries);
  const was = newest?.stored.encryption;
  if (!newest || !was) return;
  const which = `the newest backup of ${name} (${newest.id})`;
  if (!encryption)
    throw new UsageError(
      `${which} is encrypted, and no key to encrypt this one to was given: refusing to store it unencrypted`,
      `give the key (--recipient, --recipients-file, --passphrase-file, --identity, or SQLITE_VAULT_RECIPIENTS and the like); to store it unencrypted on purpose, pass --no-encryption`,
    );
  if (was.mode === "passphrase")
    throw new UsageError(
      `${which} is encrypted with a passphrase, and only identities were given: refusing to switch it to their public keys`,
      "give the passphrase (--passphrase-file or SQLITE_VAULT_PASSPHRASE_FILE), or name the recipients to switch to with --recipient",
    );
}

/** The newest manifest of `name` that reads; a damaged one says nothing of how the next is stored. */
async function newestReadable(storage: Storage, entries: ManifestEntry[]): Promise<BackupManifest | undefined> {
  for (const entry of entries) {
    try {
      // Gone since the listing (confirmed, never one wrong answer) or damaged: the next one speaks.
      const manifest = await readListedManifest(storage, entry.key);
      if (manifest) return manifest;
    } catch (error) {
      if (!(error instanceof VerificationError)) throw error;
    }
  }
  return undefined;
}
