/** Run the compiled binary, as users do. Builds dist/sqlite-vault when it is missing or older than src/. */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

export const ROOT = join(import.meta.dir, "..", "..");
export const BINARY = join(ROOT, "dist", "sqlite-vault");

let built = false;

export function ensureBinary(): string {
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

export async function runCli(args: string[], options: { env?: Record<string, string | undefined>; cwd?: string } = {}): Promise<CliResult> {
  const proc = spawnCli(args, options);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, stdout, stderr };
}

export function spawnCli(args: string[], options: { env?: Record<string, string | undefined>; cwd?: string } = {}) {
  return Bun.spawn([ensureBinary(), ...args], { env: cliEnv(options.env ?? {}), cwd: options.cwd, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
}
