/**
 * The floor plan of docs/ARCHITECTURE.md, checked on every import in src/: imports only go down the
 * layers, commands never touch a concrete backend, SQLite or the file system, operations use only
 * the storage interface, the pipeline never imports storage, storage imports only leaves, and no
 * module imports itself back through a cycle. A new file or folder must be placed in the plan here.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = join(import.meta.dir, "..", "..", "src");

/** Layers, lowest first: a module may import its own layer and those below, never one above. */
const LAYERS: [layer: string, places: string[]][] = [
  ["leaves", ["errors.ts", "logger.ts", "output.ts", "context.ts", "interrupts.ts", "early-signals.ts", "version.ts", "util/", "local/"]],
  ["storage", ["storage/"]],
  ["core", ["repo/", "pipeline/", "check/", "monitor/"]],
  ["operations", ["ops/", "daemon/", "config/"]],
  ["commands", ["commands/", "progress.ts", "help.ts"]],
  ["entry", ["main.ts", "cli.ts"]],
];

/** Modules a place must never import (besides the layer rule). */
const FORBIDDEN: [place: string, imports: RegExp, why: string][] = [
  [
    "commands/",
    /^(storage\/(s3|file)|storage\/s3\/)|^(bun:sqlite|node:fs|fs|node:fs\/promises)$/,
    "commands never import a concrete backend, bun:sqlite or node:fs",
  ],
  ["ops/", /^storage\/(?!types\.ts$)/, "operations use only the storage interface (storage/types.ts)"],
  ["daemon/", /^storage\/(?!types\.ts$)/, "the daemon uses only the storage interface (storage/types.ts)"],
  ["pipeline/", /^storage\//, "the pipeline never imports storage: it produces and consumes streams"],
  ["check/", /^storage\/(?!types\.ts$)/, "checks use only the storage interface (storage/types.ts)"],
  ["repo/", /^storage\/(?!types\.ts$)/, "the repository layer uses only the storage interface (storage/types.ts)"],
];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(path) : entry.name.endsWith(".ts") ? [relative(SRC, path)] : [];
  });
}

function layerOf(file: string): number {
  const index = LAYERS.findIndex(([, places]) => places.some((place) => (place.endsWith("/") ? file.startsWith(place) : file === place)));
  return index;
}

/** Every module `file` imports: src-relative paths for our own, the specifier for packages and built-ins. */
function importsOf(file: string): { target: string; type: boolean }[] {
  const text = readFileSync(join(SRC, file), "utf8");
  const found: { target: string; type: boolean }[] = [];
  const pattern = /(?:^|\n)\s*(import|export)\s+(type\s+)?(?:[^;'"]*?\sfrom\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;
  for (const match of text.matchAll(pattern)) {
    const spec = match[3] ?? match[4]!;
    const target = spec.startsWith(".") ? relative(SRC, resolve(join(SRC, dirname(file)), spec)) : spec;
    found.push({ target, type: Boolean(match[2]) });
  }
  return found;
}

const files = sourceFiles(SRC).sort();

describe("architecture", () => {
  test("every module in src/ has a place in the plan", () => {
    expect(files.filter((f) => layerOf(f) < 0)).toEqual([]);
  });

  test("imports only go down the layers", () => {
    const up: string[] = [];
    for (const file of files)
      for (const { target } of importsOf(file)) {
        if (!target.endsWith(".ts")) continue;
        if (layerOf(target) > layerOf(file))
          up.push(`${file} (${LAYERS[layerOf(file)]![0]}) imports ${target} (${LAYERS[layerOf(target)]?.[0]})`);
      }
    expect(up).toEqual([]);
  });

  test("commands, operations, checks and the pipeline keep to their side of the storage interface", () => {
    const broken: string[] = [];
    for (const file of files)
      for (const [place, pattern, why] of FORBIDDEN) {
        if (!file.startsWith(place)) continue;
        for (const { target, type } of importsOf(file)) if (!type && pattern.test(target)) broken.push(`${file} imports ${target}: ${why}`);
      }
    expect(broken).toEqual([]);
  });

  test("storage imports only leaves and itself", () => {
    const broken = files
      .filter((f) => f.startsWith("storage/"))
      .flatMap((file) =>
        importsOf(file)
          .filter(({ target }) => target.endsWith(".ts") && !target.startsWith("storage/") && layerOf(target) !== 0)
          .map(({ target }) => `${file} imports ${target}`),
      );
    expect(broken).toEqual([]);
  });

  test("no import cycles", () => {
    const graph = new Map(
      files.map((f) => [
        f,
        importsOf(f)
          .filter((i) => !i.type && i.target.endsWith(".ts"))
          .map((i) => i.target),
      ]),
    );
    const cycles: string[] = [];
    const state = new Map<string, "visiting" | "done">();
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === "done") return;
      if (state.get(file) === "visiting") {
        cycles.push([...path.slice(path.indexOf(file)), file].join(" -> "));
        return;
      }
      state.set(file, "visiting");
      for (const next of graph.get(file) ?? []) visit(next, [...path, file]);
      state.set(file, "done");
    };
    for (const file of files) visit(file, []);
    expect(cycles).toEqual([]);
  });
});
