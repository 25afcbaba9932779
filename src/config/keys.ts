/**
 * Which age keys a run uses, from where: flags, then the environment, then the config file; the first
 * layer that names any key decides alone. This is the one place those layers are merged: a target
 * carries its keys (targetKeys), resolved when a command first asks for them. Identity and passphrase
 * files are read and checked here, so a bad key fails before the keys are used. The streams that use
 * the keys live in pipeline/age.ts.
 */
import { UsageError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { ageLibrary, type DecryptionSettings, type EncryptionSettings } from "../pipeline/age.ts";
import type { Env } from "../storage/credentials.ts";
import { type Layer, pickLayer } from "../util/layers.ts";
import { checkedIdentity, nonEmpty, readKeyLines, readSecretFile, warnIfReadableByOthers } from "./key-files.ts";

/** What a backup is to be: encrypted, or not; `plaintextChosen` when the user said so (--no-encryption). */
export interface BackupEncryption {
  encryption: EncryptionSettings | null;
  plaintextChosen: boolean;
}

/** The key flags a command was given (a command without one of them leaves it absent). */
export interface KeyFlags {
  /** --recipient, as often as given. */
  recipients: string[];
  recipientsFile?: string;
  passphrase?: string;
  passphraseFile?: string;
  /** --identity, as often as given: decrypts, and encrypts to its public key when nothing else names a key. */
  identities: string[];
  /** --encryption: true, --no-encryption: false, absent: undefined. */
  encryption?: boolean;
  /** --allow-unencrypted: read unencrypted backups even though keys were given. */
  allowUnencrypted?: boolean;
}

/** No key flag: keys from the environment and the config file only. */
export const NO_KEY_FLAGS: KeyFlags = { recipients: [], identities: [] };

/** A target's keys, each resolved on the first call and kept (a key file is read once, and only when needed). */
export interface TargetKeys {
  /** What a backup is to be. Rejects with UsageError as resolveEncryption says. */
  encryption(): Promise<BackupEncryption>;
  /** Identities and passphrases for reading encrypted backups. Throws UsageError as resolveDecryption says. */
  decryption(): DecryptionSettings;
}

/**
 * The keys of one target: `flags` over `env` over `file` (its config entry over the file's defaults).
 * Nothing is read until asked; then each answer, and the identity files both read, are kept.
 */
export function targetKeys(flags: KeyFlags, env: Env, log: Logger, file: FileKeys): TargetKeys {
  const identities = once(() => readIdentities(flags.identities, env, file, log));
  return {
    encryption: once(() => resolveEncryption(flags, env, log, file, identities)),
    decryption: once(() => resolveDecryption(flags, env, log, file, identities)),
  };
}

/** `compute` on the first call, its value after (a promise as it settles, a rejected one too); a throw is not kept. */
function once<T>(compute: () => T): () => T {
  let done: { value: T } | undefined;
  return () => {
    done ??= { value: compute() };
    return done.value;
  };
}

/** Keys named in the config file: the lowest layer, under flags and the environment. */
export interface FileKeys {
  recipients?: string[];
  recipientsFile?: string;
  passphraseFile?: string;
  identityFiles?: string[];
  /** `encryption: false`: backups are stored unencrypted, by choice. */
  plaintext?: boolean;
}

/** The keys one layer names; the layers, highest first, are the command line, the environment and the config file. */
interface KeyLayer {
  recipients: string[];
  /** The recipients setting was named, even if with nothing in it (SQLITE_VAULT_RECIPIENTS=" "). */
  recipientsGiven: boolean;
  recipientsFile?: string;
  passphrase?: string;
  passphraseFile?: string;
  /** Unencrypted backups asked for by name (--no-encryption, SQLITE_VAULT_ENCRYPTION=false, encryption: false). */
  plaintext: boolean;
  /** How the user wrote each setting, for messages. */
  names: { recipients: string; recipientsFile: string; passphrase: string; passphraseFile: string; plaintext: string };
}

type KeySource = "the command line" | "the environment" | "the config file";

function keyLayers(flags: KeyFlags, env: Env, file: FileKeys): Layer<KeyLayer, KeySource>[] {
  const fromEnv = env.SQLITE_VAULT_RECIPIENTS;
  const layer = (from: KeySource, value: KeyLayer) => ({ from, value });
  return [
    layer("the command line", {
      recipients: flags.recipients,
      recipientsFile: flags.recipientsFile,
      passphrase: flags.passphrase,
      passphraseFile: flags.passphraseFile,
      recipientsGiven: flags.recipients.length > 0,
      plaintext: flags.encryption === false,
      names: {
        recipients: "--recipient",
        recipientsFile: "--recipients-file",
        passphrase: "--passphrase",
        passphraseFile: "--passphrase-file",
        plaintext: "--no-encryption",
      },
    }),
    layer("the environment", {
      recipients: fromEnv === undefined ? [] : fromEnv.split(/[\s,]+/).filter(Boolean),
      recipientsGiven: fromEnv !== undefined,
      recipientsFile: env.SQLITE_VAULT_RECIPIENTS_FILE,
      passphrase: env.SQLITE_VAULT_PASSPHRASE,
      passphraseFile: env.SQLITE_VAULT_PASSPHRASE_FILE,
      plaintext: encryptionFromEnv(env) === false,
      names: {
        recipients: "SQLITE_VAULT_RECIPIENTS",
        recipientsFile: "SQLITE_VAULT_RECIPIENTS_FILE",
        passphrase: "SQLITE_VAULT_PASSPHRASE",
        passphraseFile: "SQLITE_VAULT_PASSPHRASE_FILE",
        plaintext: "SQLITE_VAULT_ENCRYPTION=false",
      },
    }),
    layer("the config file", {
      recipients: file.recipients ?? [],
      recipientsGiven: file.recipients !== undefined,
      recipientsFile: file.recipientsFile,
      // A config file may name a passphrase file for restores beside recipients for backups.
      passphraseFile: file.recipients?.length || file.recipientsFile ? undefined : file.passphraseFile,
      plaintext: file.plaintext === true,
      names: {
        recipients: "encryption.recipients",
        recipientsFile: "encryption.recipients-file",
        passphrase: "",
        passphraseFile: "encryption.passphrase-file",
        plaintext: "encryption: false",
      },
    }),
  ];
}

const namesAnyKey = (layer: KeyLayer) =>
  layer.recipientsGiven || layer.recipientsFile !== undefined || layer.passphrase !== undefined || layer.passphraseFile !== undefined;

/** SQLITE_VAULT_ENCRYPTION: true or false (1 or 0); undefined when unset or empty. */
function encryptionFromEnv(env: Env): boolean | undefined {
  const value = env.SQLITE_VAULT_ENCRYPTION;
  if (value === undefined || value === "") return undefined;
  if (!["1", "0", "true", "false"].includes(value))
    throw new UsageError(`SQLITE_VAULT_ENCRYPTION must be true or false (1 or 0), not "${value}"`);
  return value === "1" || value === "true";
}

/**
 * Resolve what to encrypt to. One layer decides, the first that names any key or asks for no
 * encryption: flags, then the environment (SQLITE_VAULT_RECIPIENTS, SQLITE_VAULT_RECIPIENTS_FILE,
 * SQLITE_VAULT_PASSPHRASE, SQLITE_VAULT_PASSPHRASE_FILE, SQLITE_VAULT_ENCRYPTION=false), then the
 * config file; a key named in a lower layer never joins one from a higher (rotating a key on the
 * command line must leave the old one out). When none does, identities (--identity,
 * SQLITE_VAULT_IDENTITY_FILE, encryption.identity-files) give their public keys, as `age -e -i` does;
 * so do identities from a higher layer than the one that asks for no encryption.
 * `encryption` is null when nothing asks for encryption. Anything that asks for it and yields no key
 * (an empty value, a file with no recipient, --encryption alone) is a UsageError: encryption asked
 * for never silently becomes a plaintext backup.
 */
async function resolveEncryption(
  flags: KeyFlags,
  env: Env,
  log: Logger,
  file: FileKeys,
  identitiesOf: () => string[],
): Promise<BackupEncryption> {
  const required = pickLayer([
    { from: "--encryption", value: flags.encryption },
    { from: "SQLITE_VAULT_ENCRYPTION", value: encryptionFromEnv(env) },
  ]);
  const found = pickLayer(keyLayers(flags, env, file), (l) => l.plaintext || namesAnyKey(l));
  // Plaintext chosen below the layer that gives identities (a config file's `encryption: false`
  // under --identity) does not outrank them: the backup is encrypted to their public keys.
  const identitiesFrom = identityRank(flags.identities, env, file);
  const outranked = found?.value.plaintext && identitiesFrom !== undefined && identitiesFrom < RANK[found.from];
  const picked = outranked ? undefined : found;
  if (!picked) {
    const identities = identitiesOf();
    if (identities.length) {
      const age = ageLibrary();
      const recipients = await Promise.all(identities.map((identity) => age.identityToRecipient(identity)));
      log.debug(`no recipient or passphrase named: encrypting to the public keys of the ${identities.length} identities given`);
      return { encryption: { recipients: [...new Set(recipients)], fromIdentities: true }, plaintextChosen: false };
    }
    if (required?.value)
      throw new UsageError(
        `${required.from} asks for encryption and no key is named`,
        "give --recipient, --recipients-file or --passphrase-file (or their SQLITE_VAULT_… variables)",
      );
    return { encryption: null, plaintextChosen: false };
  }
  const { value: layer, from } = picked;
  if (layer.plaintext) {
    if (namesAnyKey(layer))
      throw new UsageError(`${layer.names.plaintext} asks for no encryption, and a key is named beside it`, "leave out one or the other");
    if (required?.value) throw new UsageError(`--encryption and ${layer.names.plaintext} contradict each other`);
    return { encryption: null, plaintextChosen: true };
  }
  const recipients = [...layer.recipients];
  if (layer.recipientsGiven && !recipients.length)
    throw new UsageError(`${layer.names.recipients} is set but holds no recipient`, "set it to one or more age1… public keys, or unset it");
  if (layer.recipientsFile !== undefined) {
    const path = nonEmpty(layer.recipientsFile, layer.names.recipientsFile);
    const keys = readKeyLines(path, "recipients file");
    if (!keys.length)
      throw new UsageError(
        `the recipients file ${path} holds no recipient`,
        "one age1… public key per line (sqlite-vault keygen prints one)",
      );
    recipients.push(...keys);
  }
  const passphrase = passphraseOf(layer, from, log);
  if (recipients.length && passphrase !== undefined) throw new UsageError("use either recipients or a passphrase, not both");
  for (const r of recipients) {
    if (r.startsWith("AGE-SECRET-KEY"))
      throw new UsageError(
        "a recipient is a public key (age1…); that was a secret identity",
        "keep identities off the machine that backs up; pass the public key",
      );
    try {
      new (ageLibrary().Encrypter)().addRecipient(r);
    } catch {
      throw new UsageError(
        r.trim() ? `"${r.slice(0, 12)}…" is not an age recipient` : "a recipient is empty",
        "recipients look like age1… (sqlite-vault keygen prints one)",
      );
    }
  }
  if (recipients.length) return { encryption: { recipients: [...new Set(recipients)] }, plaintextChosen: false };
  if (passphrase !== undefined) return { encryption: { recipients: [], passphrase }, plaintextChosen: false };
  throw new UsageError(`${layer.names.recipients} names no recipient`, "give an age1… public key, or leave encryption out");
}

/**
 * Resolve identities and passphrases for reading encrypted backups (SQLITE_VAULT_IDENTITY_FILE, …),
 * and whether an unencrypted backup may be read beside them.
 * Every identity is checked here: one that does not parse is a UsageError naming its file, never
 * quoted (a mistyped secret key is still almost all of the secret), and a file with no identity in
 * it is an error, not "no identity given".
 */
function resolveDecryption(flags: KeyFlags, env: Env, log: Logger, file: FileKeys, identitiesOf: () => string[]): DecryptionSettings {
  const identities = identitiesOf();
  const layers = keyLayers({ ...NO_KEY_FLAGS, passphrase: flags.passphrase, passphraseFile: flags.passphraseFile }, env, {
    passphraseFile: file.passphraseFile,
  });
  const layer = pickLayer(layers, (l) => l.passphrase !== undefined || l.passphraseFile !== undefined);
  const passphrase = layer ? passphraseOf(layer.value, layer.from, log) : undefined;
  // Plaintext said by name lets keys read it too, but only where it outranks the keys: a config
  // file's `encryption: false` must not lower the guard on an --identity given for this run.
  const keyRanks = [identityRank(flags.identities, env, file), layer ? RANK[layer.from] : undefined].filter((r) => r !== undefined);
  const keysFrom = Math.min(...keyRanks);
  const plaintextFrom =
    encryptionFromEnv(env) === false ? RANK["the environment"] : file.plaintext === true ? RANK["the config file"] : undefined;
  const unencryptedAllowed = flags.allowUnencrypted === true || (plaintextFrom !== undefined && plaintextFrom <= keysFrom);
  return { identities, passphrases: passphrase === undefined ? [] : [passphrase], unencryptedAllowed };
}

const RANK: Record<KeySource, number> = { "the command line": 0, "the environment": 1, "the config file": 2 };

/** The layer the identities come from, as readIdentities picks it; undefined when none names one. */
function identityRank(flagged: string[], env: Env, file: FileKeys): number | undefined {
  if (flagged.length) return RANK["the command line"];
  if (env.SQLITE_VAULT_IDENTITY_FILE !== undefined) return RANK["the environment"];
  if (file.identityFiles !== undefined) return RANK["the config file"];
  return undefined;
}

/** The identities of --identity, else SQLITE_VAULT_IDENTITY_FILE (colon separated), else the config file's identity-files; each checked. */
function readIdentities(flagged: string[], env: Env, file: FileKeys, log: Logger): string[] {
  const identities: string[] = [];
  const picked = pickLayer([
    { from: "--identity", value: flagged.length ? flagged : undefined },
    { from: "SQLITE_VAULT_IDENTITY_FILE", value: env.SQLITE_VAULT_IDENTITY_FILE?.split(":") },
    { from: "encryption.identity-files", value: file.identityFiles },
  ]);
  for (const source of picked?.value ?? []) {
    if (source.startsWith("AGE-SECRET-KEY-")) {
      log.warn("an identity given on the command line is visible in the process list; use --identity FILE");
      identities.push(checkedIdentity(source, "the identity given on the command line"));
      continue;
    }
    const path = nonEmpty(source, picked!.from);
    warnIfReadableByOthers(path, log);
    const lines = readKeyLines(path, "identity file");
    if (!lines.length)
      throw new UsageError(
        `the identity file ${path} holds no age identity`,
        "an identity file holds AGE-SECRET-KEY-1… lines, as sqlite-vault keygen or age-keygen write them",
      );
    for (const [i, line] of lines.entries()) identities.push(checkedIdentity(line, `key ${i + 1} in the identity file ${path}`));
  }
  return identities;
}

function passphraseOf(layer: KeyLayer, from: KeySource, log: Logger): string | undefined {
  if (layer.passphrase !== undefined) {
    if (layer.passphrase === "") throw new UsageError(`${layer.names.passphrase} is empty`, "give a passphrase, or leave it out");
    if (from === "the command line")
      log.warn("a passphrase given on the command line is visible in the process list; use --passphrase-file or SQLITE_VAULT_PASSPHRASE");
    return layer.passphrase;
  }
  if (layer.passphraseFile === undefined) return undefined;
  const path = nonEmpty(layer.passphraseFile, layer.names.passphraseFile);
  warnIfReadableByOthers(path, log);
  const text = readSecretFile(path, "passphrase file").replace(/\r?\n$/, "");
  if (!text) throw new UsageError(`the passphrase file ${path} is empty`);
  return text;
}
