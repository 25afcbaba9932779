import { UsageError } from "../errors.ts";
import { generateIdentityFile, writeIdentityFile } from "../ops/keygen.ts";
import { outputArgs } from "./_args.ts";
import { defineVaultCommand } from "./_run.ts";

interface KeygenResult {
  recipient: string;
  output: string | null;
}

export default defineVaultCommand({
  meta: { name: "keygen", description: "Create an age identity for encrypted backups and print its public key" },
  args: {
    output: { type: "string", alias: "o", valueHint: "FILE", description: "Write the identity to FILE (mode 0600; never overwritten)" },
    ...outputArgs,
  },
  async execute({ flags, ctx }): Promise<KeygenResult> {
    if (flags.json && !flags.output)
      throw new UsageError("--json needs --output: an identity is never printed in JSON", "sqlite-vault keygen --output key.txt --json");
    const { text, recipient } = await generateIdentityFile();
    if (!flags.output) {
      // As age-keygen: the identity on stdout for redirection, the public key on stderr.
      process.stdout.write(text);
      ctx.log.info(`public key: ${recipient}`);
      return { recipient, output: null };
    }
    writeIdentityFile(flags.output, text);
    return { recipient, output: flags.output };
  },
  render: (r) => (r.output ? r.recipient : ""),
});
