/**
 * Local-directory storage: the embedded default, which needs no server.
 * Each put writes a hidden temp name in the target directory, fsyncs it, renames it into place and
 * fsyncs the directory, so a crash leaves either the old state or the complete object. Temp names
 * start with "." and are never listed.
 */
import { constants } from "node:fs";
import { mkdir, open, readdir, rename, rm, rmdir, stat } from "node:fs/promises";
import { basename, dirname, join, sep } from "node:path";
import { Readable } from "node:stream";
import { AuthError, NotFoundError, StorageUnavailableError } from "../errors.ts";
import { syncDirectory, writeFully } from "../local/fsync.ts";
import { resolveForWrite } from "../local/safe-path.ts";
import { iterate } from "../util/streams.ts";
import {
  assertValidKey,
  isValidKey,
  type GetOptions,
  type ObjectInfo,
  type ObjectStream,
  type PartialWrite,
  type PutOptions,
  type Storage,
} from "./types.ts";

export const TEMP_MARK = ".sqlite-vault-tmp-";

export class FileStorage implements Storage {
  readonly url: string;

  readonly root: string;

  private readonly createParents: boolean;

  /**
   * `createParents`: create() makes missing parent directories too. Otherwise only the repository
   * directory itself is made, as `mkdir` does: a missing parent is more often a volume not mounted
   * than a new repository, and backups (or a start-up restore finding "no backups") on the disk
   * beneath would go unnoticed.
   */
  constructor(root: string, { createParents = false }: { createParents?: boolean } = {}) {
    this.url = `file://${root}`;
    this.root = resolveForWrite(root);
    this.createParents = createParents;
  }

  private pathOf(key: string): string {
    assertValidKey(key);
    return join(this.root, ...key.split("/"));
  }

  check(): Promise<void> {
    return this.checkRoot(false);
  }

  create(): Promise<void> {
    return this.checkRoot(true);
  }

  private async checkRoot(create: boolean): Promise<void> {
    let info = await statIfPresent(this.root);
    if (!info && create) {
      await mkdir(this.root, { recursive: this.createParents, mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "EEXIST") return; // made meanwhile
        if (error.code === "ENOENT")
          throw new StorageUnavailableError(
            `${dirname(this.root)}, the directory that would hold repository ${this.root}, does not exist`,
            `check --repo (a volume not mounted?); if the repository belongs there, create it: mkdir -p ${this.root}`,
          );
        throw new StorageUnavailableError(
          `cannot create repository directory ${this.root}: ${error.code ?? error.message}`,
          "check --repo and the permissions of its parent directories",
        );
      });
      info = await statIfPresent(this.root);
    }
    if (info && !info.isDirectory())
      throw new StorageUnavailableError(
        `repository path ${this.root} is not a directory`,
        "check --repo: a local repository is a directory",
      );
    if (!info)
      throw new StorageUnavailableError(
        `repository directory ${this.root} does not exist`,
        "check --repo, or run a backup first: backup creates the directory",
      );
  }

  async put(key: string, body: ReadableStream<Uint8Array> | Uint8Array, options: PutOptions = {}): Promise<{ size: number }> {
    const path = this.pathOf(key);
    const dir = dirname(path);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = join(dir, `${TEMP_MARK}${crypto.randomUUID()}`);
    const handle = await open(tmp, "wx", 0o600);
    let size = 0;
    try {
      if (body instanceof Uint8Array) {
        await writeFully(handle, body);
        size = body.byteLength;
      } else {
        for await (const chunk of iterate(body, options.signal)) {
          await writeFully(handle, chunk);
          size += chunk.byteLength;
        }
      }
      options.signal?.throwIfAborted();
      await handle.sync();
      await handle.close();
      await rename(tmp, path);
    } catch (error) {
      await handle.close().catch(() => {});
      await rm(tmp, { force: true });
      throw error;
    }
    await syncDirectory(dir);
    const written = await stat(path);
    if (written.size !== size) throw new Error(`stored size of ${key} is ${written.size}, expected ${size}`);
    return { size };
  }

  async get(key: string, options: GetOptions = {}): Promise<ObjectStream> {
    const path = this.pathOf(key);
    const info = await statIfPresent(path);
    // Opened here, not when the stream first reads: an object removed meanwhile (a concurrent prune)
    // is NotFoundError like any missing key, never a read error in the middle of a download.
    // Non-blocking, so a FIFO put in the object's place after the stat cannot hang the open; the
    // opened file's own stat decides, and gives the size of what will be read. Only a missing file is
    // NotFoundError: one that cannot be read (another user's, an I/O error) is thrown as such, since
    // readers pass over a missing manifest and would silently take an older backup.
    const handle = info?.isFile()
      ? await open(path, constants.O_RDONLY | constants.O_NONBLOCK).catch((error: NodeJS.ErrnoException) => {
          if (isMissing(error)) return null;
          throw readError(path, error);
        })
      : null;
    const opened = handle ? await handle.stat() : null;
    if (!handle || !opened?.isFile()) {
      await handle?.close().catch(() => {});
      await this.check();
      throw new NotFoundError(`${key} not found in ${this.url}`);
    }
    const size = opened.size;
    const stream = handle.createReadStream({ highWaterMark: 1 << 20, signal: options.signal });
    return Object.assign(Readable.toWeb(stream) as unknown as ReadableStream<Uint8Array>, { size });
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const info = await statIfPresent(this.pathOf(key));
    if (!info?.isFile()) {
      await this.check();
      return null;
    }
    return { key, size: info.size, lastModified: info.mtime };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    await this.check();
    // Walk only the directories that can hold matching keys.
    const slash = prefix.lastIndexOf("/");
    const base = slash < 0 ? "" : prefix.slice(0, slash);
    const keys: string[] = [];
    await collectKeys(this.root, base, keys);
    keys.sort();
    for (const key of keys) {
      // A file no key can name (a backslash, a control character) was not written here: passed over.
      if (!key.startsWith(prefix) || !isValidKey(key)) continue;
      const info = await this.stat(key);
      if (info) yield info;
    }
  }

  async delete(keys: string[]): Promise<void> {
    const dirs = new Set<string>();
    for (const key of keys) {
      const path = this.pathOf(key);
      await rm(path, { force: true });
      dirs.add(dirname(path));
    }
    for (const dir of dirs) {
      // A directory that held only these keys goes too (never the repository root).
      if (dir !== this.root && (await readdir(dir).catch(() => [""])).length === 0) await rmdir(dir).catch(() => {});
      await syncDirectory(dir === this.root ? dir : dirname(dir)).catch(() => {});
    }
  }

  async *listPartialWrites(prefix: string): AsyncIterable<PartialWrite> {
    await this.check();
    const slash = prefix.lastIndexOf("/");
    for await (const write of listTempFiles(this.root, slash < 0 ? "" : prefix.slice(0, slash)))
      if (write.key.startsWith(prefix.slice(0, slash + 1))) yield write;
  }

  async abortPartialWrite(write: PartialWrite): Promise<void> {
    if (!write.handle.startsWith(this.root + sep) || !basename(write.handle).startsWith(TEMP_MARK))
      throw new Error(`not a temp file of this repository: ${write.handle}`);
    await rm(write.handle, { force: true });
  }
}

function isMissing(error: NodeJS.ErrnoException): boolean {
  return error.code === "ENOENT" || error.code === "ENOTDIR";
}

/** The file's stat, or null when nothing is there; any other failure is thrown (readError). */
function statIfPresent(path: string) {
  return stat(path).catch((error: NodeJS.ErrnoException) => {
    if (isMissing(error)) return null;
    throw readError(path, error);
  });
}

function readError(path: string, error: NodeJS.ErrnoException): Error {
  const what = `cannot read ${path}: ${error.code ?? error.message}`;
  if (error.code === "EACCES" || error.code === "EPERM")
    return new AuthError(what, "check the owner and mode of the repository's files, or run as the user who owns them", { cause: error });
  return new StorageUnavailableError(what, "check the repository's file system", { cause: error });
}

async function* listTempFiles(root: string, relDir: string): AsyncIterable<PartialWrite> {
  for await (const file of walkFiles(root, relDir))
    if (basename(file.rel).startsWith(TEMP_MARK)) {
      const info = await statIfPresent(file.abs);
      if (info) yield { key: file.rel, handle: file.abs, startedAt: info.mtime };
    }
}

async function collectKeys(root: string, relDir: string, out: string[]): Promise<void> {
  // Temp files and anything hidden are never objects.
  for await (const file of walkFiles(root, relDir)) if (!basename(file.rel).startsWith(".")) out.push(file.rel);
}

/**
 * The files under `relDir`, descending into directories whose names are not hidden. A symbolic link
 * to a directory is walked: put() writes through one (a name's directory linked to another disk), so
 * the listing must see what was written there. A directory reached again (a link back up) is not
 * walked twice; a directory removed meanwhile (a concurrent prune) holds nothing.
 */
async function* walkFiles(root: string, relDir: string, seen = new Set<string>()): AsyncGenerator<{ rel: string; abs: string }> {
  const abs = relDir ? join(root, ...relDir.split("/")) : root;
  const here = await statIfPresent(abs);
  if (!here?.isDirectory() || seen.has(`${here.dev}:${here.ino}`)) return;
  seen.add(`${here.dev}:${here.ino}`);
  const entries = await readdir(abs, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (isMissing(error)) return [];
    throw readError(abs, error);
  });
  for (const entry of entries) {
    const rel = relDir ? `${relDir}/${entry.name}` : entry.name;
    const path = join(abs, entry.name);
    // A link that leads nowhere, or round in a loop (ELOOP), holds nothing: passed over like a dangling one.
    const target = entry.isSymbolicLink()
      ? await stat(path).catch((error: NodeJS.ErrnoException) => {
          if (isMissing(error) || error.code === "ELOOP") return null;
          throw readError(path, error);
        })
      : entry;
    if (target?.isDirectory()) {
      if (!entry.name.startsWith(".")) yield* walkFiles(root, rel, seen);
    } else if (entry.isFile()) yield { rel, abs: path }; // never a link to a file: put() writes none
  }
}
