/** keygen: create an age identity, and write it where no other file is overwritten. */
import { closeSync, openSync, writeSync } from "node:fs";
import { VaultError } from "../errors.ts";
import { resolveForWrite } from "../local/safe-path.ts";
import { generateIdentityFile } from "../pipeline/age.ts";

export { generateIdentityFile };

/** Write an identity file with mode 0600. Throws VaultError when `path` exists: an identity is never overwritten. */
export function writeIdentityFile(path: string, text: string): void {
  let fd: number;
  try {
    fd = openSync(resolveForWrite(path), "wx", 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST")
      throw new VaultError(
        `${path} already exists; refusing to overwrite an identity`,
        "choose another path: a lost identity makes its backups unreadable",
      );
    throw error;
  }
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}
