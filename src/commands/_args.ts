/** Flag fragments shared by commands, spread into each command's args. */
import type { ArgsDef } from "citty";

export const outputArgs = {
  json: { type: "boolean", description: "Print one JSON document on stdout (errors: one JSON object on stderr)" },
  verbose: { type: "boolean", description: "More detail on stderr, and stack traces for errors" },
  quiet: { type: "boolean", alias: "q", description: "Only warnings and errors on stderr" },
} as const satisfies ArgsDef;

export const repoArgs = {
  repo: {
    type: "string",
    valueHint: "URL",
    description:
      "Repository: a directory, file:///dir or s3://bucket/prefix (env SQLITE_VAULT_REPO; default ~/.local/share/sqlite-vault/repo)",
  },
  endpoint: {
    type: "string",
    valueHint: "URL",
    description: "S3 endpoint (env SQLITE_VAULT_S3_ENDPOINT, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL; default AWS)",
  },
  region: { type: "string", description: "S3 region (env AWS_REGION, AWS_DEFAULT_REGION; default us-east-1)" },
  "path-style": { type: "boolean", description: "S3 path-style addressing (default: on for custom endpoints, off for AWS)" },
  retries: { type: "string", valueHint: "N", description: "Retries of a failed S3 request (env SQLITE_VAULT_RETRIES; default 5)" },
  timeout: { type: "string", valueHint: "DURATION", description: "Time limit of each S3 request (env SQLITE_VAULT_TIMEOUT; default 60s)" },
  deadline: {
    type: "string",
    valueHint: "DURATION",
    description:
      "Time limit of the whole run, retries included; then it stops as if interrupted, exit 1 (env SQLITE_VAULT_DEADLINE; default none)",
  },
  "part-size": {
    type: "string",
    valueHint: "MiB",
    description: "S3 multipart part size, at least 5 (env SQLITE_VAULT_PART_SIZE; default 5, more for databases over 44 GiB)",
  },
} as const satisfies ArgsDef;

export const databaseArgs = {
  db: { type: "positional", required: false, description: "Path of the SQLite database", valueHint: "DB" },
  name: { type: "string", description: "Backup name (default: the database file name without .db/.sqlite/.sqlite3)" },
} as const satisfies ArgsDef;

export const tmpDirArgs = {
  "tmp-dir": {
    type: "string",
    valueHint: "DIR",
    description: "Directory for temporary files (env SQLITE_VAULT_TMP_DIR; default the OS temp dir)",
  },
} as const satisfies ArgsDef;

export const checkArgs = {
  check: {
    type: "boolean",
    description:
      "quick_check the snapshot before storing it: a damaged database is refused, never backed up (env SQLITE_VAULT_CHECK; config check)",
  },
} as const satisfies ArgsDef;

export const policyArgs = {
  "keep-last": { type: "string", valueHint: "N", description: "Keep the N newest backups" },
  "keep-hourly": { type: "string", valueHint: "N", description: "Keep the newest backup of each of the last N hours that have one" },
  "keep-daily": { type: "string", valueHint: "N", description: "… of each of the last N days" },
  "keep-weekly": { type: "string", valueHint: "N", description: "… of each of the last N ISO weeks" },
  "keep-monthly": { type: "string", valueHint: "N", description: "… of each of the last N months" },
  "keep-yearly": { type: "string", valueHint: "N", description: "… of each of the last N years" },
  "keep-within": { type: "string", valueHint: "DURATION", description: "Keep every backup newer than DURATION (36h, 7d, 2w, 6m, 1y)" },
  timezone: { type: "string", valueHint: "ZONE", description: "Time zone for calendar periods (default UTC)" },
  grace: { type: "string", valueHint: "DURATION", description: "Leave interrupted uploads younger than this alone (default 24h)" },
} as const satisfies ArgsDef;

export const encryptArgs = {
  recipient: {
    type: "string",
    valueHint: "AGE_PUBLIC_KEY",
    description: "Encrypt to this age public key (repeatable; env SQLITE_VAULT_RECIPIENTS)",
  },
  "recipients-file": {
    type: "string",
    valueHint: "FILE",
    description: "Encrypt to the age public keys in FILE (env SQLITE_VAULT_RECIPIENTS_FILE)",
  },
  "passphrase-file": {
    type: "string",
    valueHint: "FILE",
    description: "Encrypt with the passphrase in FILE (env SQLITE_VAULT_PASSPHRASE_FILE, SQLITE_VAULT_PASSPHRASE)",
  },
  passphrase: { type: "string", description: "Passphrase (visible in the process list: prefer --passphrase-file)" },
  encryption: {
    type: "boolean",
    description:
      "Refuse to back up without a key; --no-encryption stores unencrypted on purpose, even after encrypted backups (env SQLITE_VAULT_ENCRYPTION; config encryption: false)",
  },
} as const satisfies ArgsDef;

export const decryptArgs = {
  identity: {
    type: "string",
    valueHint: "FILE",
    description: "age identity file for encrypted backups (repeatable; env SQLITE_VAULT_IDENTITY_FILE)",
  },
  "passphrase-file": {
    type: "string",
    valueHint: "FILE",
    description: "Passphrase of encrypted backups, from FILE (env SQLITE_VAULT_PASSPHRASE_FILE, SQLITE_VAULT_PASSPHRASE)",
  },
  passphrase: { type: "string", description: "Passphrase (visible in the process list: prefer --passphrase-file)" },
  "allow-unencrypted": {
    type: "boolean",
    description:
      "Read unencrypted backups even though keys were given (refused by default: anyone who can write the storage can plant one)",
  },
} as const satisfies ArgsDef;

export const compressionArgs = {
  compression: {
    type: "string",
    valueHint: "gzip|zstd|none",
    description: "Compression of the stored object (env SQLITE_VAULT_COMPRESSION; default gzip)",
  },
} as const satisfies ArgsDef;

export const healthcheckArgs = {
  "healthcheck-url": {
    type: "string",
    valueHint: "URL",
    description: "Ping URL/start, URL and URL/fail around each backup (healthchecks.io style; env SQLITE_VAULT_HEALTHCHECK_URL)",
  },
} as const satisfies ArgsDef;

/** cron's own: the schedule, the startup restore, the application it runs and how it stops. */
export const daemonArgs = {
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
} as const satisfies ArgsDef;

/** The settings of a backup job, shared by backup and cron. */
export const jobArgs = { ...tmpDirArgs, ...checkArgs, ...policyArgs, ...encryptArgs, ...healthcheckArgs } as const satisfies ArgsDef;
