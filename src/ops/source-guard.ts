/**
 * A name derived from the file name (app.db -> app) is shared by every app.db: two databases backed
 * up under it to one repository would mix, and then retention prunes one by the other's backups and
 * `restore --latest` may bring back the wrong database. So a derived name whose newest backup is of
 * a file at another path is refused. The host is not compared: a machine rebuilt after a disaster,
 * or a container redeployed, has a new host name and the same database at the same path. A name
 * given with --name (or a config file's `name`) is the user's decision: a database that moved to
 * another path keeps its name that way.
 */
import { isFutureDated, listManifests, readListedManifest, type ManifestEntry } from "../repo/catalog.ts";
import { UsageError, VerificationError } from "../errors.ts";
import type { BackupManifest } from "../repo/manifest.ts";
import type { Storage } from "../storage/types.ts";

/**
 * Throws UsageError (exit 2) when the newest backup of `name` (or, given `before`, the newest older
 * than that id) is of another file than `source`. `entries`: the name's manifests as already listed
 * (else they are listed now). A damaged manifest says nothing about the source and is passed over;
 * throws the storage's errors.
 */
export async function assertSameSource(
  storage: Storage,
  name: string,
  source: string,
  { before, entries }: { before?: string; entries?: ManifestEntry[] } = {},
): Promise<void> {
  // The newest backup of the name (before `before`: the one just older than ours), passing over a
  // future-dated one as restores do: a planted manifest does not decide whose backups these are.
  const newest = (entries ?? (await listManifests(storage, name))).find(
    (entry) => !isFutureDated(entry) && (before === undefined || entry.id < before),
  );
  if (newest === undefined) return;
  let previous: BackupManifest | null;
  try {
    previous = await readListedManifest(storage, newest.key);
  } catch (error) {
    // Damaged (restore and verify will say so), or removed meanwhile (null): it says nothing about
    // the source. Any other failure (the storage's) is no answer, and is thrown.
    if (error instanceof VerificationError) return;
    throw error;
  }
  if (!previous) return;
  if (!previous.source || previous.source.path === source) return;
  throw new UsageError(
    `backups named ${name} in ${storage.url} are of ${previous.source.path} (on ${previous.host}), not of ${source}`,
    `give this database its own name with --name; or, if it is the same database moved here, pass --name ${name}`,
  );
}
