import { splitCommand } from "../daemon/application.ts";
import { startDaemon } from "../daemon/daemon.ts";
import { createEventWriter } from "../daemon/events.ts";
import { parseListenAddress } from "../daemon/server.ts";
import { UsageError } from "../errors.ts";
import { validateSchedule } from "../config/file.ts";
import { parseDuration } from "../repo/retention.ts";
import { resolveNow, resolveStopTimeout } from "../config/settings.ts";
import { checkArgs, databaseArgs, encryptArgs, outputArgs, policyArgs, repoArgs, tmpDirArgs } from "./_args.ts";
import { defineVaultCommand, keyFlags } from "./_run.ts";
import { configArgs, resolveTargets } from "../config/targets.ts";

const args = {
  ...databaseArgs,
  ...configArgs,
  schedule: {
    type: "string",
    valueHint: "EXPR",
    description: 'When to back up: 5 cron fields, @hourly-style nicknames or "@every 30min" (env SQLITE_VAULT_SCHEDULE; default @hourly)',
  },
  "restore-if-missing": { type: "boolean", description: "Before anything else, restore each configured database that does not exist" },
  exec: {
    type: "string",
    valueHint: "CMD",
    description: "Start the application after the startup restore; forward signals; exit with its code after a final backup",
  },
  listen: { type: "string", valueHint: "127.0.0.1:PORT", description: "Serve GET /health (JSON) and GET /metrics (Prometheus)" },
  "stop-timeout": {
    type: "string",
    valueHint: "DURATION",
    description:
      "With --exec: time the application has to exit after SIGTERM before it is killed (SIGKILL), then the final backup (env SQLITE_VAULT_STOP_TIMEOUT; config stop-timeout; default 30s)",
  },
  "shutdown-timeout": {
    type: "string",
    valueHint: "DURATION",
    description: "Time allowed for the final backups on shutdown (default 30s)",
  },
  "healthcheck-url": {
    type: "string",
    valueHint: "URL",
    description: "Ping URL/start, URL and URL/fail around each backup (env SQLITE_VAULT_HEALTHCHECK_URL)",
  },
  ...repoArgs,
  ...tmpDirArgs,
  ...checkArgs,
  ...policyArgs,
  ...encryptArgs,
  identity: {
    type: "string",
    valueHint: "FILE",
    description:
      "age identity file for the startup restore of encrypted backups, and to encrypt to when no recipient is named (repeatable)",
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
    if (flags.schedule) validateSchedule(flags.schedule);
    const shutdown = parseDuration(flags["shutdown-timeout"] ?? "30s", "--shutdown-timeout");
    if (shutdown.months || shutdown.years) throw new UsageError("--shutdown-timeout reads as months; write minutes as min");
    const listen = flags.listen ? parseListenAddress(flags.listen) : undefined;
    const exec = flags.exec ? splitCommand(flags.exec) : undefined;
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
    for (const { db, name, nameGiven, settings, storage, keys } of targets)
      daemonTargets.push({
        db: db!,
        name: name!,
        nameGiven,
        settings,
        storage,
        ...(await keys.encryption()),
        decryption: keys.decryption(),
      });
    const emit = createEventWriter({ json: flags.json === true, quiet: flags.quiet === true }, process);
    const stopTimeoutMs = resolveStopTimeout(flags["stop-timeout"], process.env.SQLITE_VAULT_STOP_TIMEOUT, config?.stopTimeout);
    const daemon = await startDaemon(
      {
        targets: daemonTargets,
        restoreIfMissing: flags["restore-if-missing"] === true,
        exec,
        execStdoutToStderr: flags.json === true,
        stopTimeoutMs,
        listen,
        shutdownTimeoutMs: shutdown.ms,
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
