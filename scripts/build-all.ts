#!/usr/bin/env bun
/**
 * Cross-compile sqlite-vault for every release target into dist/, and write dist/SHA256SUMS.
 * Bun fetches the other targets' runtimes from the npm registry.
 *   bun run build:all
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compile, ROOT, type BuildTarget } from "./build.ts";

export const TARGETS: BuildTarget[] = [
  { bun: "bun-linux-x64", name: "linux-x64" },
  { bun: "bun-linux-arm64", name: "linux-arm64" },
  { bun: "bun-linux-x64-musl", name: "linux-x64-musl" },
  { bun: "bun-darwin-x64", name: "darwin-x64" },
  { bun: "bun-darwin-arm64", name: "darwin-arm64" },
];

const lines: string[] = [];
for (const target of TARGETS) {
  const file = `sqlite-vault-${target.name}`;
  compile(target, join(ROOT, "dist", file));
  const sha = new Bun.CryptoHasher("sha256").update(readFileSync(join(ROOT, "dist", file))).digest("hex");
  lines.push(`${sha}  ${file}`);
}
writeFileSync(join(ROOT, "dist", "SHA256SUMS"), `${lines.join("\n")}\n`);
console.log(lines.join("\n"));
