import { afterAll, describe, expect, test } from "bun:test";
import * as age from "age-encryption";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type FileKeys, NO_KEY_FLAGS, targetKeys, type KeyFlags } from "../../src/config/keys.ts";
import { UsageError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";

const dir = mkdtempSync(join(tmpdir(), "keys-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {}, success: () => {} } as unknown as Logger;

async function identityFile(name: string): Promise<{ path: string; identity: string; recipient: string }> {
  const identity = await age.generateIdentity();
  const path = join(dir, name);
  writeFileSync(path, `${identity}\n`);
  chmodSync(path, 0o600);
  return { path, identity, recipient: await age.identityToRecipient(identity) };
}

function secretFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  chmodSync(path, 0o600);
  return path;
}

describe("targetKeys", () => {
  test("reads nothing until asked, then each key file once", async () => {
    const { path, identity } = await identityFile("lazy.txt");
    const passphraseFile = join(dir, "not-yet.txt");
    // Its passphrase file does not exist yet: no error until the keys are asked for.
    const keys = targetKeys(NO_KEY_FLAGS, {}, quiet, { identityFiles: [path], passphraseFile });
    secretFile("not-yet.txt", "pass\n");
    const first = keys.decryption();
    expect(first).toEqual({ identities: [identity], passphrases: ["pass"], unencryptedAllowed: false });
    rmSync(path);
    rmSync(passphraseFile);
    // Kept: neither file is read again.
    expect(keys.decryption()).toBe(first);
    // Encryption reads its identities through the same once: read by decryption, not again.
    const again = await identityFile("again.txt");
    const shared = targetKeys(NO_KEY_FLAGS, {}, quiet, { identityFiles: [again.path] });
    expect(shared.decryption().identities).toEqual([again.identity]);
    rmSync(again.path);
    expect(await shared.encryption()).toEqual({
      encryption: { recipients: [again.recipient], fromIdentities: true },
      plaintextChosen: false,
    });
  });

  test("a key that fails is an error each time it is asked for, not a missing key", async () => {
    const keys = targetKeys({ ...NO_KEY_FLAGS, identities: [join(dir, "absent.txt")] }, {}, quiet, {});
    expect(() => keys.decryption()).toThrow(UsageError);
    expect(() => keys.decryption()).toThrow(UsageError);
    expect(keys.encryption()).rejects.toThrow(UsageError);
  });

  test("precedence: a flag over the environment over the config file, one layer deciding alone", async () => {
    const flag = await identityFile("flag.txt");
    const env = await identityFile("env.txt");
    const file = await identityFile("file.txt");
    const fileKeys = { identityFiles: [file.path], recipients: [file.recipient] };
    const flags: KeyFlags = { ...NO_KEY_FLAGS, identities: [flag.path], recipients: [flag.recipient] };
    const cases: [string, KeyFlags, Record<string, string>, string, string][] = [
      ["flags", flags, { SQLITE_VAULT_IDENTITY_FILE: env.path, SQLITE_VAULT_RECIPIENTS: env.recipient }, flag.identity, flag.recipient],
      ["env", NO_KEY_FLAGS, { SQLITE_VAULT_IDENTITY_FILE: env.path, SQLITE_VAULT_RECIPIENTS: env.recipient }, env.identity, env.recipient],
      ["config file", NO_KEY_FLAGS, {}, file.identity, file.recipient],
    ];
    for (const [label, given, environment, identity, recipient] of cases) {
      const keys = targetKeys(given, environment, quiet, fileKeys);
      expect(keys.decryption().identities, label).toEqual([identity]);
      expect((await keys.encryption()).encryption?.recipients, label).toEqual([recipient]);
    }
  });

  test("plaintext chosen lets keys read an unencrypted backup only from the keys' own layer or a higher one", async () => {
    const { path } = await identityFile("allow.txt");
    const passphraseFile = secretFile("allow-pass.txt", "pass\n");
    const off = { SQLITE_VAULT_ENCRYPTION: "false" };
    const cases: [string, KeyFlags, Record<string, string>, FileKeys, boolean][] = [
      ["--identity, config encryption: false", { ...NO_KEY_FLAGS, identities: [path] }, {}, { plaintext: true }, false],
      ["--identity, SQLITE_VAULT_ENCRYPTION=false", { ...NO_KEY_FLAGS, identities: [path] }, off, {}, false],
      ["--passphrase-file, SQLITE_VAULT_ENCRYPTION=false", { ...NO_KEY_FLAGS, passphraseFile }, off, {}, false],
      ["env identity, config encryption: false", NO_KEY_FLAGS, { SQLITE_VAULT_IDENTITY_FILE: path }, { plaintext: true }, false],
      ["env identity, SQLITE_VAULT_ENCRYPTION=false", NO_KEY_FLAGS, { ...off, SQLITE_VAULT_IDENTITY_FILE: path }, {}, true],
      ["config identity, SQLITE_VAULT_ENCRYPTION=false", NO_KEY_FLAGS, off, { identityFiles: [path] }, true],
      ["config identity, config encryption: false", NO_KEY_FLAGS, {}, { identityFiles: [path], plaintext: true }, true],
      ["--identity and --allow-unencrypted", { ...NO_KEY_FLAGS, identities: [path], allowUnencrypted: true }, {}, {}, true],
      ["config identity alone", NO_KEY_FLAGS, {}, { identityFiles: [path] }, false],
    ];
    for (const [label, flags, env, file, allowed] of cases)
      expect(targetKeys(flags, env, quiet, file).decryption().unencryptedAllowed, label).toBe(allowed);
  });

  test("identities given above the layer that asks for no encryption are encrypted to; at or below it, plaintext stands", async () => {
    const { path, recipient } = await identityFile("outranks.txt");
    const off = { SQLITE_VAULT_ENCRYPTION: "false" };
    const cases: [string, KeyFlags, Record<string, string>, FileKeys, string[] | null][] = [
      ["--identity, config encryption: false", { ...NO_KEY_FLAGS, identities: [path] }, {}, { plaintext: true }, [recipient]],
      ["--identity, SQLITE_VAULT_ENCRYPTION=false", { ...NO_KEY_FLAGS, identities: [path] }, off, {}, [recipient]],
      ["env identity, config encryption: false", NO_KEY_FLAGS, { SQLITE_VAULT_IDENTITY_FILE: path }, { plaintext: true }, [recipient]],
      ["env identity, SQLITE_VAULT_ENCRYPTION=false", NO_KEY_FLAGS, { ...off, SQLITE_VAULT_IDENTITY_FILE: path }, {}, null],
      ["config identity, SQLITE_VAULT_ENCRYPTION=false", NO_KEY_FLAGS, off, { identityFiles: [path] }, null],
      ["config identity, config encryption: false", NO_KEY_FLAGS, {}, { identityFiles: [path], plaintext: true }, null],
      ["--identity, --no-encryption", { ...NO_KEY_FLAGS, identities: [path], encryption: false }, {}, {}, null],
    ];
    for (const [label, flags, env, file, recipients] of cases) {
      const { encryption } = await targetKeys(flags, env, quiet, file).encryption();
      expect(encryption?.recipients ?? null, label).toEqual(recipients);
    }
  });

  test("a passphrase file beside recipients in the config file is for restores; the environment's passphrase wins over it", async () => {
    const { recipient } = await identityFile("pp.txt");
    const passphraseFile = secretFile("pass.txt", "from-file\n");
    const keys = targetKeys(NO_KEY_FLAGS, {}, quiet, { recipients: [recipient], passphraseFile });
    expect((await keys.encryption()).encryption?.recipients).toEqual([recipient]);
    expect(keys.decryption().passphrases).toEqual(["from-file"]);
    const env = targetKeys(NO_KEY_FLAGS, { SQLITE_VAULT_PASSPHRASE: "from-env" }, quiet, { passphraseFile });
    expect(env.decryption().passphrases).toEqual(["from-env"]);
  });
});
