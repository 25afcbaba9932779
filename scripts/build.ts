#!/usr/bin/env bun
/**
 * Compile dist/sqlite-vault for this machine: `bun run build`.
 * The binary never autoloads .env or bunfig.toml from the working directory, so a stray file there
 * can never change where backups go.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const outfile = join(root, "dist", process.platform === "win32" ? "sqlite-vault.exe" : "sqlite-vault");
mkdirSync(join(root, "dist"), { recursive: true });

const result = Bun.spawnSync(
  [
    process.execPath,
    "build",
    "--compile",
    "--minify",
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    join(root, "src", "cli.ts"),
    "--outfile",
    outfile,
  ],
  { cwd: root, stdout: "inherit", stderr: "inherit" },
);
if (result.exitCode !== 0) process.exit(result.exitCode ?? 1);
