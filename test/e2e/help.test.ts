/**
 * --help as it is read: plain text wrapped to 80 columns through a pipe or into a file, and coloured
 * and wrapped to the terminal's width on a real pseudo-terminal (`script`), plain there too under NO_COLOR.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { ensureBinary, runCli } from "../helpers/cli.ts";

setDefaultTimeout(60_000);

const COMMANDS = ["", "backup", "list", "restore", "verify", "prune", "doctor", "keygen", "cron", "status", "version"];
const ESC = "\u001b";

/** Run the binary on a pseudo-terminal of `columns` columns; its output with the terminal's CRs removed. */
function onTerminal(args: string, columns: number, env: Record<string, string> = {}): string {
  const shell = `stty cols ${columns} rows 50; ${ensureBinary()} ${args}`;
  const r = Bun.spawnSync(["script", "-qec", shell, "/dev/null"], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", TERM: "xterm", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(r.exitCode, r.stderr.toString()).toBe(0);
  return r.stdout.toString().replaceAll("\r", "");
}

const stripAnsi = (text: string) => text.replace(/\u001b\[[0-9;]*m/g, "");

describe("--help", () => {
  test("through a pipe: no colour codes, no trailing padding, no line over 80 columns, for every command", async () => {
    for (const command of COMMANDS) {
      const r = await runCli(command ? [command, "--help"] : ["--help"]);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).not.toContain(ESC);
      expect(r.stdout).toContain("EXAMPLES");
      for (const line of r.stdout.split("\n")) {
        expect(line.length, `${command} --help: ${line}`).toBeLessThanOrEqual(80);
        expect(line, `${command} --help: trailing spaces`).toBe(line.trimEnd());
      }
    }
    // COLUMNS of a shell is no terminal: a pipe stays at 80
    const wide = await runCli(["backup", "--help"], { env: { COLUMNS: "200" } });
    expect(Math.max(...wide.stdout.split("\n").map((l) => l.length))).toBeLessThanOrEqual(80);
  });

  test("on a terminal: coloured and wrapped to its width; plain under NO_COLOR", () => {
    for (const command of ["", "cron", "restore"]) {
      const narrow = onTerminal(`${command} --help`, 60);
      expect(narrow).toContain(ESC);
      // a crontab entry is never cut: crontab has no continuation lines
      const over = stripAnsi(narrow)
        .split("\n")
        .filter((line) => line.length > 60);
      expect(over, `${command} --help`).toEqual(command ? [] : ["  0 * * * *  sqlite-vault backup /var/lib/app/app.db --keep-daily 7"]);
    }
    const wide = stripAnsi(onTerminal("backup --help", 120));
    const longest = Math.max(...wide.split("\n").map((l) => l.length));
    expect(longest).toBeGreaterThan(80);
    expect(longest).toBeLessThanOrEqual(120);

    const plain = onTerminal("cron --help", 70, { NO_COLOR: "1" });
    expect(plain).not.toContain(ESC);
    expect(plain).toContain("--shutdown-timeout DURATION");
    for (const line of plain.split("\n")) expect(line.length).toBeLessThanOrEqual(70);
  });
});
