/** cron's own flags as the daemon's options, each checked before anything starts. */
import { validateSchedule } from "../config/file.ts";
import { UsageError } from "../errors.ts";
import { parseDuration } from "../repo/retention.ts";
import { splitCommand } from "./application.ts";
import { type ListenAddress, parseListenAddress } from "./server.ts";

export interface DaemonFlags {
  schedule?: string;
  "shutdown-timeout"?: string;
  listen?: string;
  exec?: string;
}

export interface DaemonFlagOptions {
  exec?: string[];
  listen?: ListenAddress;
  shutdownTimeoutMs: number;
}

/** Throws UsageError for a bad schedule, duration, address or command (--stop-timeout: resolveStopTimeout, with the config file). */
export function daemonFlagOptions(flags: DaemonFlags): DaemonFlagOptions {
  if (flags.schedule) validateSchedule(flags.schedule);
  const shutdown = parseDuration(flags["shutdown-timeout"] ?? "30s", "--shutdown-timeout");
  if (shutdown.months || shutdown.years) throw new UsageError("--shutdown-timeout reads as months; write minutes as min");
  return {
    listen: flags.listen ? parseListenAddress(flags.listen) : undefined,
    exec: flags.exec ? splitCommand(flags.exec) : undefined,
    shutdownTimeoutMs: shutdown.ms,
  };
}
