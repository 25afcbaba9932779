import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, locate, parseConfig, validateSchedule } from "../../src/config/file.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import { UsageError } from "../../src/errors.ts";
import { mergeFileSettings } from "../../src/config/targets.ts";
import { splitCommand } from "../../src/daemon/application.ts";

const FULL = `# a full config
repo: s3://bucket/\${PREFIX}?endpoint=http://127.0.0.1:7480
compression: zstd
tmp-dir: /var/tmp
schedule: "@hourly"
healthcheck-url: https://hc.example/\${HC}
retries: 3
timeout: 2min
part-size: 16
path-style: true
retention:
  keep-daily: 7
  keep-within: 2w
encryption:
  recipients: [age1example]
databases:
  - path: /srv/a.db
  - path: b.sqlite
    name: bee
    schedule: "*/15 * * * *"
    compression: gzip
    retention:
      keep-last: 3
`;

describe("parseConfig", () => {
  test("reads defaults and databases, expanding ${VAR}", () => {
    const config = parseConfig(FULL, "/etc/vault/sqlite-vault.yml", { PREFIX: "prod", HC: "uuid-1" });
    expect(config.defaults).toEqual({
      repo: "s3://bucket/prod?endpoint=http://127.0.0.1:7480",
      compression: "zstd",
      tmpDir: "/var/tmp",
      schedule: "@hourly",
      healthcheckUrl: "https://hc.example/uuid-1",
      retries: "3",
      timeout: "2min",
      partSize: "16",
      pathStyle: true,
      retention: { "keep-daily": "7", "keep-within": "2w" },
      recipients: ["age1example"],
    });
    expect(config.databases).toEqual([
      { path: "/srv/a.db", name: undefined, settings: {} },
      {
        path: "/etc/vault/b.sqlite",
        name: "bee",
        settings: { schedule: "*/15 * * * *", compression: "gzip", retention: { "keep-last": "3" } },
      },
    ]);
  });

  test("--no-expand-env keeps ${VAR} as written; $$ is a literal $", () => {
    expect(parseConfig("repo: /x/${NOPE}", "c.yml", {}, false).defaults.repo).toBe("/x/${NOPE}");
    expect(parseConfig("repo: /x/$${A}", "c.yml", { A: "1" }).defaults.repo).toBe("/x/${A}");
  });

  const invalid: [string, string, RegExp][] = [
    ["an unknown key", "repo: /x\nbackup-dir: /y\n", /c\.yml:2: backup-dir is not a known setting/],
    ["a wrong type", "repo: /x\nretries: many\n", /c\.yml:2: retries must be a whole number, not string "many"/],
    ["a bad schedule", "schedule: every hour\n", /c\.yml:1: schedule is invalid: "every hour" is not a schedule/],
    ["a bad duration", "retention:\n  keep-within: forever\n", /c\.yml:2: retention\.keep-within "forever" is not a duration/],
    ["an unknown retention key", "retention:\n  keep-forever: 1\n", /c\.yml:2: retention\.keep-forever is not a retention setting/],
    ["a zero count", "retention:\n  keep-last: 0\n", /c\.yml:2: retention\.keep-last must be a whole number of at least 1/],
    ["a database without a path", "databases:\n  - name: x\n", /c\.yml:2: databases\[0\]\.path is required/],
    [
      "a bad key in the second database",
      'databases:\n  - path: /a.db\n  - path: /b.db\n    schedul: "@daily"\n',
      /c\.yml:4: databases\[1\]\.schedul is not a known setting/,
    ],
    ["a secret in the config", "encryption:\n  passphrase: hunter2\n", /c\.yml:2: encryption\.passphrase is not an encryption setting/],
    ["an unset variable", "repo: s3://b/${UNSET_VAR}\n", /c\.yml:1: repo uses \$\{UNSET_VAR\}, which is not set/],
    ["a repeated database", "databases:\n  - path: /a.db\n  - path: /a.db\n", /c\.yml:3: databases\[1\]\.path repeats databases\[0\]/],
    [
      "two databases under one name",
      "databases:\n  - path: /a.db\n    name: main\n  - path: /b.db\n    name: main\n",
      /c\.yml:5: databases\[1\]\.name gives the backup name main of databases\[0\] to another database/,
    ],
    [
      "two files that derive one name",
      "databases:\n  - path: /a/app.db\n  - path: /b/app.sqlite\n",
      /c\.yml:3: databases\[1\]\.path gives the backup name app of databases\[0\]/,
    ],
    ["an empty recipients list", "encryption:\n  recipients: []\n", /c\.yml:2: encryption\.recipients must list at least one key/],
    ["an encryption section naming no key", "encryption: {}\n", /c\.yml:1: encryption names no key/],
    [
      "an encryption section left empty (its key commented out)",
      "repo: /x\nencryption:\n  # recipients: [age1…]\n",
      /c\.yml:2: encryption is empty/,
    ],
    [
      "encryption: true",
      "encryption: true\n",
      /c\.yml:1: encryption must be a mapping such as \{ recipients: \[age1…\] \}, or false for unencrypted backups/,
    ],
    ["a timeout under a second", "timeout: 0s\n", /c\.yml:1: timeout "0s" is shorter than a second/],
    [
      "a recipients file that expands to nothing",
      'encryption:\n  recipients-file: "${EMPTY}"\n',
      /c\.yml:2: encryption\.recipients-file is empty/,
    ],
    ["retries out of range", "repo: /x\nretries: 500\n", /c\.yml:2: retries must be from 0 to 100, not 500/],
    ["a part size under S3's minimum", "part-size: 2\n", /c\.yml:1: part-size must be from 5 to 5120, not 2/],
    ["a timeout in months", "timeout: 2m\n", /c\.yml:1: timeout "2m" reads as months or years/],
    ["an unknown compression", "repo: /x\ncompression: lz4\n", /c\.yml:2: compression must be one of gzip, zstd, none, not "lz4"/],
    [
      "an unknown time zone",
      "retention:\n  keep-daily: 7\n  timezone: Mars/Base\n",
      /c\.yml:3: retention\.timezone "Mars\/Base" is not an IANA time zone/,
    ],
    [
      "a name that cannot be a key",
      "databases:\n  - path: /a.db\n    name: bad/name\n",
      /c\.yml:3: databases\[0\]\.name "bad\/name" cannot be a backup name/,
    ],
    ["not YAML", "repo: [unclosed\n", /c\.yml: invalid YAML/],
    ["not a mapping", "- just\n- a list\n", /c\.yml: the file must be a mapping/],
  ];
  for (const [what, text, message] of invalid)
    test(`refuses ${what}, naming the key and line`, () => {
      let error: unknown;
      try {
        parseConfig(text, "c.yml", { EMPTY: "" });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(UsageError);
      expect((error as Error).message).toMatch(message);
    });

  test("file names in it are relative to the config file, and ~/ is the home directory; URLs stay as written", () => {
    const text =
      "repo: ./repo\ntmp-dir: tmp\nencryption:\n  recipients-file: keys/recipients.txt\n  identity-files: [~/id.txt, /abs/id.txt]\ndatabases:\n  - path: ~/app.db\n  - path: data/x.db\n    repo: s3://bucket/p?endpoint=http://127.0.0.1:7480\n";
    const config = parseConfig(text, "/etc/vault/c.yml", { HOME: "/home/u" });
    expect(config.defaults).toMatchObject({
      repo: "/etc/vault/repo",
      tmpDir: "/etc/vault/tmp",
      recipientsFile: "/etc/vault/keys/recipients.txt",
      identityFiles: ["/home/u/id.txt", "/abs/id.txt"],
    });
    expect(config.databases.map((d) => d.path)).toEqual(["/home/u/app.db", "/etc/vault/data/x.db"]);
    expect(config.databases[1]!.settings.repo).toBe("s3://bucket/p?endpoint=http://127.0.0.1:7480");
  });

  test("a database's encryption replaces the defaults' whole, never joins it", () => {
    const config = parseConfig(
      "encryption:\n  recipients: [age1default]\n  identity-files: [/keys/id.txt]\ndatabases:\n  - path: /a.db\n  - path: /b.db\n    encryption:\n      passphrase-file: /keys/b-pass.txt\n",
      "/c.yml",
      {},
    );
    const [a, b] = config.databases.map((d) => mergeFileSettings(config.defaults, d.settings));
    expect(a).toMatchObject({ recipients: ["age1default"], identityFiles: ["/keys/id.txt"] });
    expect(b!.passphraseFile).toBe("/keys/b-pass.txt");
    expect(b!.recipients).toBeUndefined();
    expect(b!.identityFiles).toBeUndefined();
  });

  test("encryption: false is plaintext on purpose, and replaces the defaults' keys either way", () => {
    const config = parseConfig(
      "encryption:\n  recipients: [age1default]\ndatabases:\n  - path: /a.db\n    encryption: false\n  - path: /b.db\n",
      "/c.yml",
      {},
    );
    const [a, b] = config.databases.map((d) => mergeFileSettings(config.defaults, d.settings));
    expect(a).toMatchObject({ plaintext: true });
    expect(a!.recipients).toBeUndefined();
    expect(b).toMatchObject({ recipients: ["age1default"] });
    expect(b!.plaintext).toBeUndefined();
    const reverse = parseConfig(
      "encryption: false\ndatabases:\n  - path: /a.db\n    encryption:\n      recipients: [age1own]\n",
      "/c.yml",
      {},
    );
    const own = mergeFileSettings(reverse.defaults, reverse.databases[0]!.settings);
    expect(own.recipients).toEqual(["age1own"]);
    expect(own.plaintext).toBeUndefined();
  });

  test("locate finds keys by indentation", () => {
    const text = "a: 1\nlist:\n  - x: 1\n  - x: 2\n    y:\n      z: 3\n";
    expect(locate(text, ["list", 1, "y", "z"])).toBe(6);
    expect(locate(text, ["list", 0, "x"])).toBe(3);
    expect(locate(text, ["a"])).toBe(1);
  });
});

describe("loadConfig discovery", () => {
  const dir = mkdtempSync(join(tmpdir(), "sqlite-vault-config-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  test("a named file that is missing is a usage error; a missing default is fine", () => {
    expect(() => loadConfig({ path: join(dir, "nope.yml"), env: {}, cwd: dir })).toThrow(UsageError);
    expect(() => loadConfig({ env: { SQLITE_VAULT_CONFIG: join(dir, "nope.yml") }, cwd: dir })).toThrow(UsageError);
    expect(loadConfig({ env: {}, cwd: join(dir) })).toBeNull();
  });
  test("--config, then SQLITE_VAULT_CONFIG, then ./sqlite-vault.yml", () => {
    mkdirSync(join(dir, "cwd"), { recursive: true });
    writeFileSync(join(dir, "cwd", "sqlite-vault.yml"), "repo: /from-cwd\n");
    writeFileSync(join(dir, "env.yml"), "repo: /from-env\n");
    writeFileSync(join(dir, "flag.yml"), "repo: /from-flag\n");
    const cwd = join(dir, "cwd");
    expect(loadConfig({ path: join(dir, "flag.yml"), env: { SQLITE_VAULT_CONFIG: join(dir, "env.yml") }, cwd })?.defaults.repo).toBe(
      "/from-flag",
    );
    expect(loadConfig({ env: { SQLITE_VAULT_CONFIG: join(dir, "env.yml") }, cwd })?.defaults.repo).toBe("/from-env");
    expect(loadConfig({ env: {}, cwd })?.defaults.repo).toBe("/from-cwd");
  });
});

describe("precedence: flag > env > config entry > config defaults > built-in", () => {
  const defaults = parseConfig(
    "repo: /cfg-default\ncompression: zstd\nschedule: '@daily'\nretention:\n  keep-daily: 7\n  keep-last: 2\n",
    "c.yml",
    {},
  ).defaults;
  const entry = parseConfig("databases:\n  - path: /a.db\n    repo: /cfg-entry\n    retention:\n      keep-last: 5\n", "c.yml", {})
    .databases[0]!.settings;
  const file = mergeFileSettings(defaults, entry);
  const cases: {
    label: string;
    flags: Parameters<typeof resolveSettings>[0];
    env: Record<string, string>;
    want: Record<string, unknown>;
  }[] = [
    {
      label: "config entry over config defaults",
      flags: {},
      env: {},
      want: {
        repo: "/cfg-entry",
        repoSource: "config",
        compression: "zstd",
        schedule: "@daily",
        retention: { "keep-daily": "7", "keep-last": "5" },
      },
    },
    {
      label: "env over config",
      flags: {},
      env: { SQLITE_VAULT_REPO: "/env", SQLITE_VAULT_COMPRESSION: "none", SQLITE_VAULT_SCHEDULE: "@weekly" },
      want: { repo: "/env", repoSource: "env", compression: "none", schedule: "@weekly" },
    },
    {
      label: "flags over everything",
      flags: { repo: "/flag", compression: "gzip", schedule: "@monthly", retention: { "keep-last": "9" } },
      env: { SQLITE_VAULT_REPO: "/env" },
      want: {
        repo: "/flag",
        repoSource: "flag",
        compression: "gzip",
        schedule: "@monthly",
        retention: { "keep-daily": "7", "keep-last": "9" },
      },
    },
    {
      label: "built-in defaults without a config",
      flags: {},
      env: { HOME: "/h" },
      want: { repo: "/h/.local/share/sqlite-vault/repo", repoSource: "default", compression: "gzip", schedule: "@hourly", retention: {} },
    },
  ];
  for (const c of cases)
    test(c.label, () => {
      expect(resolveSettings(c.flags, c.env, c.label.startsWith("built-in") ? {} : file)).toMatchObject(c.want);
    });
});

describe("schedules and commands", () => {
  test("schedules: cron fields, nicknames and @every", () => {
    for (const ok of ["@hourly", "@daily", "*/15 * * * *", "0 3 * * MON", "@every 30s", "@every 6h", "@every 15min"]) validateSchedule(ok);
    // The examples the help and the errors give must be schedules themselves.
    expect(() => validateSchedule("@every 15m")).toThrow(UsageError); // 15 months
    for (const bad of ["hourly", "61 * * * *", "@every", "@every 0s", "@every 1m", "* * *"])
      expect(() => validateSchedule(bad)).toThrow(UsageError);
  });
  test("--exec command lines split like a shell", () => {
    expect(splitCommand("node server.js --port 3000")).toEqual(["node", "server.js", "--port", "3000"]);
    expect(splitCommand(`sh -c 'echo "hi there"' x\\ y ""`)).toEqual(["sh", "-c", 'echo "hi there"', "x y", ""]);
    expect(() => splitCommand("echo 'unclosed")).toThrow(UsageError);
  });
});
