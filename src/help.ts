/** Real examples printed at the end of --help, for the root command and each subcommand. */
const CRONTAB = '0 * * * *  SQLITE_VAULT_REPO=s3://my-bucket/backups sqlite-vault backup /var/lib/app/app.db --keep-daily 7';
const RECOVERY = "sqlite-vault restore /var/lib/app/app.db --repo s3://my-bucket/backups --latest";
const VERIFY = "sqlite-vault verify --all --repo s3://my-bucket/backups";

export const EXAMPLES: Record<string, string[]> = {
  "": [`# the crontab line\n  ${CRONTAB}`, `# disaster recovery\n  ${RECOVERY}`, `# prove every backup restores\n  ${VERIFY}`],
  backup: [`# the crontab line\n  ${CRONTAB}`, "sqlite-vault backup app.db --repo /var/backups/vault --compression zstd", "sqlite-vault backup --config /etc/sqlite-vault.yml    # every configured database"],
  restore: [`# disaster recovery\n  ${RECOVERY}`, "sqlite-vault restore --name app --at 2026-11-21T09:00:00Z --output /tmp/app-before.db --repo /var/backups/vault", "sqlite-vault restore /var/lib/app/app.db --if-missing    # on container start"],
  list: ["sqlite-vault list --repo s3://my-bucket/backups", "sqlite-vault list app.db --json"],
  verify: [VERIFY, "sqlite-vault verify app.db --quick --identity ~/.config/sqlite-vault/identity.txt"],
  prune: ["sqlite-vault prune --keep-hourly 24 --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run", "sqlite-vault prune app.db --keep-last 3"],
  doctor: ["sqlite-vault doctor --repo s3://my-bucket/backups?endpoint=https://nyc3.digitaloceanspaces.com"],
  keygen: ["sqlite-vault keygen --output ~/.config/sqlite-vault/identity.txt", "sqlite-vault backup app.db --recipient age1…"],
  cron: ['sqlite-vault cron --restore-if-missing --exec "node server.js" --listen 127.0.0.1:9090', 'sqlite-vault cron app.db --repo s3://my-bucket/backups --schedule "*/15 * * * *"'],
  status: ["sqlite-vault status app.db --repo s3://my-bucket/backups --max-age 26h"],
  version: ["sqlite-vault version --json"],
};

export function renderExamples(command: string): string {
  const examples = EXAMPLES[command];
  if (!examples) return "";
  return `EXAMPLES\n\n${examples.map((e) => `  ${e}`).join("\n\n")}\n`;
}
