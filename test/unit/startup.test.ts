/**
 * What a run of the binary evaluates before it does anything: age-encryption and the cryptography
 * under it (about 5 ms) only when a key or an encrypted backup needs them (src/pipeline/age.ts).
 */
import { expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..", "..");

test("no command loads age-encryption until a key or an encrypted backup needs it", () => {
  const commands = readdirSync(join(ROOT, "src", "commands")).filter((f) => !f.startsWith("_"));
  expect(commands).toContain("restore.ts");
  const script = `
    const loaded = () => Object.keys(require.cache).filter((k) => k.includes("age-encryption")).length;
    for (const c of ${JSON.stringify(commands)}) await import("./src/commands/" + c);
    const before = loaded();
    (await import("./src/pipeline/age.ts")).ageLibrary();
    console.log(JSON.stringify({ before, after: loaded() }));`;
  // A process of its own: this one may have loaded the library for other tests.
  const run = Bun.spawnSync([process.execPath, "-e", script], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  expect(run.stderr.toString()).toBe("");
  const { before, after } = JSON.parse(run.stdout.toString());
  expect(before).toBe(0);
  expect(after).toBeGreaterThan(0);
});
