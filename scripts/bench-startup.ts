#!/usr/bin/env bun
/**
 * Binary sizes and start-up time of `--version` and `--help` (median of many runs), so regressions
 * show. Builds dist/sqlite-vault first, always: a binary left from an earlier tree would be measured
 * as this one.
 *   bun scripts/bench-startup.ts [runs=50]
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const runs = Number(process.argv[2] ?? 50);
const binary = join(root, "dist", "sqlite-vault");
const build = Bun.spawnSync([process.execPath, "run", "build"], { cwd: root, stdout: "inherit", stderr: "inherit" });
if (build.exitCode !== 0 || !existsSync(binary)) throw new Error("bun run build failed");

console.log("binary sizes");
for (const file of readdirSync(join(root, "dist"))
  .filter((f) => f.startsWith("sqlite-vault"))
  .sort())
  console.log(`  ${file.padEnd(32)} ${(statSync(join(root, "dist", file)).size / 2 ** 20).toFixed(1)} MiB`);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

for (const args of [["--version"], ["--help"], ["backup", "--help"]]) {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = Bun.spawnSync([binary, ...args], { stdout: "ignore", stderr: "ignore" });
    times.push(performance.now() - t0);
    if (r.exitCode !== 0) throw new Error(`${args.join(" ")} exited ${r.exitCode}`);
  }
  console.log(
    `sqlite-vault ${args.join(" ").padEnd(16)} median ${median(times).toFixed(1)} ms  (min ${Math.min(...times).toFixed(1)}, max ${Math.max(...times).toFixed(1)}, ${runs} runs)`,
  );
}
