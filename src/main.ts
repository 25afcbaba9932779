/** The root command: a lazy map of subcommands, so each run loads only its own imports. */
import { defineCommand } from "citty";
import { VERSION } from "./version.ts";

export const main = defineCommand({
  meta: {
    name: "sqlite-vault",
    version: VERSION,
    description: "Safe, verifiable backups of SQLite databases to S3-compatible storage or a local directory",
  },
  subCommands: {
    backup: () => import("./commands/backup.ts").then((m) => m.default),
    list: () => import("./commands/list.ts").then((m) => m.default),
    restore: () => import("./commands/restore.ts").then((m) => m.default),
    verify: () => import("./commands/verify.ts").then((m) => m.default),
    prune: () => import("./commands/prune.ts").then((m) => m.default),
    doctor: () => import("./commands/doctor.ts").then((m) => m.default),
    keygen: () => import("./commands/keygen.ts").then((m) => m.default),
    cron: () => import("./commands/cron.ts").then((m) => m.default),
    status: () => import("./commands/status.ts").then((m) => m.default),
    version: () => import("./commands/version.ts").then((m) => m.default),
  },
});
