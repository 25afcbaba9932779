/**
 * --help: the usage, arguments, options and commands of a citty command, and real examples, as plain
 * text wrapped to the width of where it is written. Rendered here rather than by citty, whose text
 * carries colour codes into pipes and files and pads every line to its longest.
 */

/** Real examples printed at the end of --help, for the root command and each subcommand; a line starting with a digit, * or @ is a crontab entry. */
// Two crontab lines (a variable, then the job): each fits in 80 columns, and crontab has no line continuation.
const CRONTAB = "SQLITE_VAULT_REPO=s3://my-bucket/backups\n0 * * * *  sqlite-vault backup /var/lib/app/app.db --keep-daily 7";
const RECOVERY = "sqlite-vault restore /var/lib/app/app.db --repo s3://my-bucket/backups --latest";
const VERIFY = "sqlite-vault verify --all --repo s3://my-bucket/backups";

export const EXAMPLES: Record<string, string[]> = {
  "": [`# the crontab line\n${CRONTAB}`, `# disaster recovery\n${RECOVERY}`, `# prove every backup restores\n${VERIFY}`],
  backup: [
    `# the crontab line\n${CRONTAB}`,
    "sqlite-vault backup app.db --repo /var/backups/vault --compression zstd",
    "sqlite-vault backup --config /etc/sqlite-vault.yml    # every configured database",
  ],
  restore: [
    `# disaster recovery\n${RECOVERY}`,
    "sqlite-vault restore --name app --at 2026-11-21T09:00:00Z --output /tmp/app-before.db --repo /var/backups/vault",
    "sqlite-vault restore /var/lib/app/app.db --if-missing    # on container start",
  ],
  list: ["sqlite-vault list --repo s3://my-bucket/backups", "sqlite-vault list app.db --json"],
  verify: [VERIFY, "sqlite-vault verify app.db --quick --identity ~/.config/sqlite-vault/identity.txt"],
  prune: [
    "sqlite-vault prune --keep-hourly 24 --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run",
    "sqlite-vault prune app.db --keep-last 3",
  ],
  doctor: ["sqlite-vault doctor --repo s3://my-bucket/backups?endpoint=https://nyc3.digitaloceanspaces.com"],
  keygen: ["sqlite-vault keygen --output ~/.config/sqlite-vault/identity.txt", "sqlite-vault backup app.db --recipient age1…"],
  cron: [
    'sqlite-vault cron --restore-if-missing --exec "node server.js" --listen 127.0.0.1:9090    # the config file\'s databases',
    'sqlite-vault cron app.db --repo s3://my-bucket/backups --schedule "*/15 * * * *"',
  ],
  status: ["sqlite-vault status app.db --repo s3://my-bucket/backups --max-age 26h"],
  version: ["sqlite-vault version --json"],
};

export interface HelpStyle {
  /** ANSI colour and emphasis: only for a terminal, and never under NO_COLOR. */
  color: boolean;
  /** The column every line stays within. */
  width: number;
}

/**
 * How --help is written to this stdout: plain text for a pipe or a file (colour codes and trailing
 * padding are noise there), wrapped to the terminal's width, or to 80 columns when there is none.
 */
export function helpStyle(stream: { isTTY?: boolean; columns?: number }, env: Record<string, string | undefined>): HelpStyle {
  const tty = stream.isTTY === true;
  const color = tty && !env.NO_COLOR && env.TERM !== "dumb";
  const columns = tty && stream.columns && stream.columns > 0 ? stream.columns : 80;
  // Below 40 columns no layout reads well; wrap as if there were 40.
  return { color, width: Math.max(40, columns) };
}

interface HelpCommand {
  meta?: unknown;
  args?: unknown;
  subCommands?: unknown;
}

interface HelpArg {
  type?: string;
  alias?: string | string[];
  valueHint?: string;
  description?: string;
  required?: boolean;
  options?: string[];
}

async function resolve<T>(value: T | (() => T | Promise<T>) | Promise<T>): Promise<T> {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : await value;
}

/**
 * The whole --help text of `cmd` (a subcommand of `parent`, or the root when `parent` is absent),
 * examples included, ending in a newline. No line is longer than `style.width` unless a single word
 * or a crontab entry is.
 */
export async function renderHelp(cmd: HelpCommand, parent: HelpCommand | undefined, style: HelpStyle): Promise<string> {
  const paint = (code: string, text: string) => (style.color ? `\u001b[${code}m${text}\u001b[0m` : text);
  const heading = (text: string) => paint("1;4", text);
  const cyan = (text: string) => paint("36", text);
  const meta = ((await resolve(cmd.meta)) ?? {}) as { name?: string; description?: string; version?: string };
  const parentMeta = ((await resolve(parent?.meta)) ?? {}) as { name?: string; version?: string };
  const commandName = parentMeta.name ? `${parentMeta.name} ${meta.name}` : (meta.name ?? "sqlite-vault");
  const version = meta.version ?? parentMeta.version;
  const args = Object.entries(((await resolve(cmd.args)) ?? {}) as Record<string, HelpArg>);

  const positionals: [string, string][] = [];
  const options: [string, string][] = [];
  const usage: string[] = [];
  for (const [name, arg] of args) {
    if (arg.type === "positional") {
      const label = arg.valueHint ?? name.toUpperCase();
      positionals.push([label, arg.description ?? ""]);
      usage.push(arg.required === false ? `[${label}]` : label);
      continue;
    }
    const hint =
      arg.type === "boolean"
        ? ""
        : ` ${arg.valueHint ?? (arg.type === "enum" && arg.options ? arg.options.join("|") : name.toUpperCase())}`;
    const aliases = [arg.alias ?? []].flat().map((a) => `-${a}, `);
    options.push([`${aliases.join("")}--${name}${hint}`, arg.description ?? ""]);
  }
  const commands: [string, string][] = [];
  if (cmd.subCommands) {
    for (const [name, loader] of Object.entries(
      (await resolve(cmd.subCommands)) as Record<string, HelpCommand | (() => Promise<HelpCommand>)>,
    )) {
      const sub = await resolve(loader);
      const subMeta = ((await resolve(sub.meta)) ?? {}) as { description?: string };
      commands.push([name, subMeta.description ?? ""]);
    }
  }

  const out: string[] = [];
  out.push(...wrap(`${meta.description ?? ""} (${commandName}${version ? ` v${version}` : ""})`, style.width, "", ""), "");
  const usageText = `${commandName}${commands.length ? " COMMAND" : ""}${options.length ? " [OPTIONS]" : ""}${usage.length ? ` ${usage.join(" ")}` : ""}`;
  out.push(`${heading("USAGE")} ${cyan(usageText)}`, "");
  const section = (title: string, rows: [string, string][]) => {
    if (!rows.length) return;
    out.push(heading(title), "", ...columns(rows, style.width, cyan), "");
  };
  section("ARGUMENTS", positionals);
  section("OPTIONS", options);
  section("COMMANDS", commands);
  if (commands.length) out.push(...wrap(`Use ${commandName} COMMAND --help for more about a command.`, style.width, "", ""), "");
  const examples = EXAMPLES[parent ? (meta.name ?? "") : ""];
  if (examples) {
    out.push(heading("EXAMPLES"), "");
    for (const example of examples) out.push(...example.split("\n").flatMap((line) => wrapCommand(line, style.width)), "");
  }
  return `${out.join("\n").trimEnd()}\n`;
}

/**
 * Rows of a name and its description: names in one column, descriptions wrapped beside them; a
 * name too long for the column puts its description below it, and so do all rows when the terminal
 * is too narrow for two columns (or for a description's longest word beside the names).
 */
function columns(rows: [string, string][], width: number, paintName: (s: string) => string): string[] {
  const indent = 2;
  const gap = 2;
  const longest = Math.max(...rows.map(([name]) => name.length));
  const column = Math.min(longest, Math.floor(width * 0.4));
  const longestWord = Math.max(...rows.flatMap(([, description]) => description.split(/\s+/).map((w) => w.length)));
  const room = width - indent - column - gap;
  const stacked = room < 30 || longestWord > room;
  const descIndent = " ".repeat(stacked ? indent + 4 : indent + column + gap);
  const lines: string[] = [];
  for (const [name, description] of rows) {
    if (stacked || name.length > column) {
      lines.push(" ".repeat(indent) + paintName(name));
      lines.push(...wrap(description, width, descIndent, descIndent));
      continue;
    }
    const first = " ".repeat(indent) + paintName(name) + " ".repeat(column - name.length + gap);
    const wrapped = wrap(description, width, descIndent, descIndent);
    lines.push(first + (wrapped[0] ?? "").slice(descIndent.length), ...wrapped.slice(1));
  }
  return lines;
}

/** Words of `text` in lines of at most `width` columns (a longer single word gets a line of its own). */
function wrap(text: string, width: number, firstIndent: string, indent: string): string[] {
  const lines: string[] = [];
  let line = firstIndent;
  let empty = true;
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (!empty && line.length + 1 + word.length > width) {
      lines.push(line);
      line = indent;
      empty = true;
    }
    line += (empty ? "" : " ") + word;
    empty = false;
  }
  if (!empty) lines.push(line);
  return lines;
}

/**
 * An example line, indented. A shell command too long for the width goes on with a backslash, so it
 * still pastes, and its trailing comment moves above it; a crontab entry is never cut (crontab has no
 * continuation lines).
 */
function wrapCommand(line: string, width: number): string[] {
  if (line.startsWith("#")) return wrap(line, width, "  ", "  # ");
  if (2 + line.length <= width || /^[\d*@]/.test(line)) return [`  ${line}`];
  const comment = /^(.*?)\s{2,}(#.*)$/.exec(line);
  if (comment) return [...wrapCommand(comment[2]!, width), ...wrapCommand(comment[1]!, width)];
  const lines: string[] = [];
  let current = "  ";
  let empty = true;
  for (const word of splitKeepingQuotes(line)) {
    if (!empty && current.length + 1 + word.length + 2 > width) {
      lines.push(`${current} \\`);
      current = "      ";
      empty = true;
    }
    current += (empty ? "" : " ") + word;
    empty = false;
  }
  lines.push(current);
  return lines;
}

/** Words of a shell line, a quoted string (with its spaces) counting as one, and a flag kept with its value. */
function splitKeepingQuotes(line: string): string[] {
  const words = line.match(/(?:"[^"]*"|'[^']*'|\S)+/g) ?? [];
  const joined: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    const next = words[i + 1];
    if (word.startsWith("-") && !word.includes("=") && next !== undefined && !next.startsWith("-")) {
      joined.push(`${word} ${next}`);
      i++;
    } else joined.push(word);
  }
  return joined;
}
