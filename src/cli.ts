#!/usr/bin/env bun
/**
 * Entry point. Like citty's runMain, but a usage error from citty itself (unknown command, bad enum)
 * exits 2, the documented usage code, instead of 1.
 */
import "./early-signals.ts";
import { runCommand } from "citty";
import { main } from "./main.ts";
import { helpStyle, renderHelp } from "./help.ts";
import { VERSION } from "./version.ts";
import { interruptedBy } from "./interrupts.ts";

const rawArgs = process.argv.slice(2);

async function resolveLeaf(args: string[]) {
  const subCommands = typeof main.subCommands === "function" ? await main.subCommands() : await main.subCommands;
  const name = args.find((a) => !a.startsWith("-"));
  const loader = name && subCommands ? subCommands[name] : undefined;
  if (!loader) return [main] as const;
  const sub = typeof loader === "function" ? await loader() : await loader;
  return [sub, main] as const;
}

async function run(): Promise<void> {
  if (rawArgs.length === 1 && (rawArgs[0] === "--version" || rawArgs[0] === "-v")) {
    process.stdout.write(`${VERSION}\n`);
  } else if (rawArgs.length === 0 || rawArgs.includes("--help") || rawArgs.includes("-h")) {
    const [cmd, parent] = await resolveLeaf(rawArgs);
    process.stdout.write(await renderHelp(cmd, parent, helpStyle(process.stdout, process.env)));
  } else {
    await runCommand(main, { rawArgs });
    return;
  }
  // Nothing else looks at a signal that came while the version or the help was printed.
  if (interruptedBy()) process.exitCode = 130;
}

let finished = false;
// If nothing is left to wait for while the command has not finished (a bug: some promise that will
// never settle), never let that pass as success: say so and fail.
process.on("beforeExit", () => {
  if (finished) return;
  finished = true;
  process.stderr.write("sqlite-vault: internal error: the command stopped before it finished; nothing it did not report is done\n");
  process.exitCode = 1;
});

// No top-level await: the executable is compiled to bytecode, which needs a plain module body.
run().then(
  () => {
    finished = true;
  },
  (error) => {
    finished = true;
    const e = error as Error & { code?: string };
    process.stderr.write(`sqlite-vault: ${e.message}\nTry: sqlite-vault --help\n`);
    process.exitCode = e.name === "CLIError" ? 2 : 1;
  },
);
