/** Run the compiled binary, as users do. */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

export const ROOT = join(import.meta.dir, "..", "..");
export const BINARY = join(ROOT, "dist", "sqlite-vault");

let built = false;

/**
 * The binary under test: SQLITE_VAULT_TEST_BINARY when set (a release build, such as
 * dist/sqlite-vault-linux-x64), else dist/sqlite-vault, built when missing or older than src/.
 */
export function ensureBinary(): string {
  if (process.env.SQLITE_VAULT_TEST_BINARY) return process.env.SQLITE_VAULT_TEST_BINARY;
  if (built) return BINARY;
  const newest = newestMtime(join(ROOT, "src"));
  if (!existsSync(BINARY) || statSync(BINARY).mtimeMs < newest) {
    const result = Bun.spawnSync([process.execPath, "run", "build"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    if (result.exitCode !== 0) throw new Error(`build failed: ${result.stderr.toString()}`);
  }
  built = true;
  return BINARY;
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** The environment the binary sees: the test process's (already scrubbed by preload) plus overrides. */
function cliEnv(env: Record<string, string | undefined>): Record<string, string> {
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, NODE_ENV: "production", ...env })) if (v !== undefined) merged[k] = v;
  return merged;
}

/**
 * Secrets the binary must never print: S3 secret keys, passphrases, identities. Every run through
 * runCli and spawnCli is scanned, so the whole suite is a scan of everything the binary prints.
 */
const secrets = new Set<string>();

export function registerSecret(secret: string): string {
  if (secret.length >= 8) secrets.add(secret);
  return secret;
}

/** Throws when `text` (anything the binary printed or sent) contains a registered secret. */
export function assertNoSecrets(text: string, args: string[]): void {
  for (const secret of secrets)
    if (text.includes(secret))
      throw new Error(`sqlite-vault ${args[0]} printed a secret (${secret.slice(0, 4)}…): the secrets scan failed`);
}

export async function runCli(
  args: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; binary?: string; as?: string[] } = {},
): Promise<CliResult> {
  // `as`: a command the binary runs under, such as setpriv to run it as another user.
  const proc = Bun.spawn([...(options.as ?? []), options.binary ?? ensureBinary(), ...args], {
    env: cliEnv(options.env ?? {}),
    cwd: options.cwd,
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  assertNoSecrets(stdout + stderr, args);
  return { exitCode, stdout, stderr };
}

/** Start the binary; its output is scanned for secrets too (`exited` rejects if one was printed). */
export function spawnCli(args: string[], options: { env?: Record<string, string | undefined>; cwd?: string } = {}) {
  const proc = Bun.spawn([ensureBinary(), ...args], {
    env: cliEnv(options.env ?? {}),
    cwd: options.cwd,
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const [stdout, scanOut] = proc.stdout.tee();
  const [stderr, scanErr] = proc.stderr.tee();
  const scanned = Promise.all([new Response(scanOut).text(), new Response(scanErr).text()]).then(([o, e]) => assertNoSecrets(o + e, args));
  return {
    stdout,
    stderr,
    kill: (signal?: NodeJS.Signals | number) => proc.kill(signal),
    get exitCode() {
      return proc.exitCode;
    },
    exited: proc.exited.then(async (code) => {
      await scanned;
      return code;
    }),
  };
}
