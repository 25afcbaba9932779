import { defineCommand } from "citty";
import { closeSync, openSync, writeSync } from "node:fs";
import { generateIdentityFile } from "../pipeline/age.ts";
import { UsageError, VaultError } from "../errors.ts";
import { resolveForWrite } from "../local/safe-path.ts";
import { outputArgs } from "./_args.ts";
import { runCommand } from "./_run.ts";

const args = {
  output: { type: "string", alias: "o", valueHint: "FILE", description: "Write the identity to FILE (mode 0600; never overwritten)" },
  ...outputArgs,
} as const;

interface KeygenResult {
  recipient: string;
  output: string | null;
}

export default defineCommand({
  meta: { name: "keygen", description: "Create an age identity for encrypted backups and print its public key" },
  args,
  run: ({ args: flags, rawArgs }) =>
    runCommand<KeygenResult>({
      flags,
      rawArgs,
      argsDef: args,
      async execute(ctx) {
        if (flags.json && !flags.output) throw new UsageError("--json needs --output: an identity is never printed in JSON", "sqlite-vault keygen --output key.txt --json");
        const { text, recipient } = await generateIdentityFile();
        if (!flags.output) {
          // As age-keygen: the identity on stdout for redirection, the public key on stderr.
          process.stdout.write(text);
          ctx.log.info(`public key: ${recipient}`);
          return { recipient, output: null };
        }
        let fd: number;
        try {
          fd = openSync(resolveForWrite(flags.output), "wx", 0o600);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === "EEXIST") throw new VaultError(`${flags.output} already exists; refusing to overwrite an identity`, "choose another path: a lost identity makes its backups unreadable");
          throw error;
        }
        try {
          writeSync(fd, text);
        } finally {
          closeSync(fd);
        }
        return { recipient, output: flags.output };
      },
      render: (r) => (r.output ? r.recipient : ""),
    }),
});
