import { startDaemon } from "../daemon/daemon.ts";
import { daemonFlagOptions } from "../daemon/options.ts";
import { createEventWriter } from "../daemon/events.ts";
import { resolveNow, resolveStopTimeout } from "../config/settings.ts";
import { daemonArgs, databaseArgs, jobArgs, outputArgs, repoArgs } from "./_args.ts";
import { jobTarget } from "../ops/backup-job.ts";
import { defineVaultCommand, keyFlags } from "./_run.ts";
import { configArgs, resolveTargets } from "../config/targets.ts";

const args = {
  ...databaseArgs,
  ...configArgs,
  ...daemonArgs,
  ...repoArgs,
  ...jobArgs,
  identity: {
    type: "string",
    valueHint: "FILE",
    description:
      "age identity file for the startup restore of encrypted backups, and to encrypt to when no recipient is named (repeatable)",
  },
  "allow-unencrypted": {
    type: "boolean",
    description: "Let the startup restore read an unencrypted backup even though keys were given (refused by default)",
  },
  ...outputArgs,
  json: {
    type: "boolean",
    description:
      "Events on stdout, one JSON object a line; the application's stdout then goes to stderr (errors: one JSON object on stderr)",
  },
} as const;

export default defineVaultCommand({
  meta: { name: "cron", description: "Run in the foreground: restore on start, back up on a schedule, take a final backup on stop" },
  args,
  signals: "manual",
  print: false,
  async execute({ flags, rawArgs, ctx }): Promise<{ exitCode: number }> {
    const options = daemonFlagOptions(flags);
    // The daemon decides when its work stops (not the first signal): the storage follows that.
    const work = new AbortController();
    const { targets, config } = resolveTargets(flags, ctx.log, {
      needsDb: {
        command: "cron",
        example: 'sqlite-vault cron /var/lib/app/app.db --repo s3://bucket/prefix --restore-if-missing --exec "node server.js"',
      },
      signal: work.signal,
      keys: keyFlags(flags, rawArgs),
    });
    const daemonTargets = [];
    // Every key now: a bad key file stops cron before it restores, starts or backs up anything.
    for (const t of targets) daemonTargets.push({ ...(await jobTarget(t)), decryption: t.keys.decryption() });
    const emit = createEventWriter({ json: flags.json === true, quiet: flags.quiet === true }, process);
    const stopTimeoutMs = resolveStopTimeout(flags["stop-timeout"], process.env.SQLITE_VAULT_STOP_TIMEOUT, config?.stopTimeout);
    const daemon = await startDaemon(
      {
        ...options,
        targets: daemonTargets,
        restoreIfMissing: flags["restore-if-missing"] === true,
        execStdoutToStderr: flags.json === true,
        stopTimeoutMs,
        now: resolveNow(process.env),
        emit,
        work,
      },
      ctx,
    );
    return { exitCode: await daemon.done };
  },
  render: () => "",
  exitCode: (r) => r.exitCode,
});
