/** keygen: create an age identity, and write it where no other file is overwritten. */
import { VaultError } from "../errors.ts";
import { writeFileAtomically } from "../local/atomic-file.ts";
import { resolveForWrite } from "../local/safe-path.ts";
import { generateIdentityFile } from "../pipeline/age.ts";

export { generateIdentityFile };

/**
 * Write an identity file with mode 0600, whole or not at all (a full disk leaves no empty file that
 * would block the retry). Throws VaultError when `path` exists: an identity is never overwritten.
 */
export function writeIdentityFile(path: string, text: string): void {
  try {
    writeFileAtomically(resolveForWrite(path), text, { mode: 0o600, replace: false });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST")
      throw new VaultError(
        `${path} already exists; refusing to overwrite an identity`,
        "choose another path: a lost identity makes its backups unreadable",
      );
    throw error;
  }
}
