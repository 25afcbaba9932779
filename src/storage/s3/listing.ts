/**
 * What the bucket holds: HEAD of one object, ListObjectsV2 paging, and the bucket check. A listing is
 * input from the network: a key it repeats is yielded once, and a page that repeats a continuation
 * token or adds nothing new while claiming more is an error, never a loop.
 */
import { NotFoundError, StorageUnavailableError } from "../../errors.ts";
import { TransientError } from "../retry.ts";
import { isValidKey, type ObjectInfo } from "../types.ts";
import type { S3Connection } from "./client.ts";
import { expectDocument, isPage, unexpectedAnswer } from "./errors.ts";
import { decodeXml, xmlText } from "./xml.ts";

type Page = { objects: ObjectInfo[]; next?: string };

/** One object's size and time, or null when it is missing. Throws StorageUnavailableError when the bucket is. */
export async function statObject(s3: S3Connection, key: string): Promise<ObjectInfo | null> {
  try {
    return await s3.request(key, { method: "HEAD", objectName: s3.objectName(key) }, undefined, async (r) => {
      // A HEAD has no body to tell an error page from an object: its headers must be an object's.
      const length = r.headers.get("content-length");
      if (length === null || !/^\d+$/.test(length) || isPage(r.headers.get("content-type")))
        throw new TransientError(
          `S3 answered HEAD ${key} without an object's headers (Content-Length ${length ?? "missing"}, Content-Type ${r.headers.get("content-type") ?? "missing"})`,
        );
      return { key, size: Number(length), lastModified: new Date(r.headers.get("last-modified") ?? 0) };
    });
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    // A HEAD has no error body, so a missing bucket also reads as 404: tell the two apart.
    await checkBucket(s3);
    return null;
  }
}

/** Resolves when the bucket answers a listing of the prefix; throws the mapped storage error otherwise. */
export async function checkBucket(s3: S3Connection): Promise<void> {
  await listPage(s3, s3.base, undefined, 1);
}

/** Every object under `prefix` (relative to the storage's prefix), each once, in the server's order. */
export async function* listObjects(s3: S3Connection, prefix: string): AsyncIterable<ObjectInfo> {
  const seen = new Set<string>();
  const tokens = new Set<string>();
  let token: string | undefined;
  do {
    const page = await listPage(s3, s3.base + prefix, token);
    let added = 0;
    for (const object of page.objects) {
      if (seen.has(object.key)) continue;
      seen.add(object.key);
      added++;
      const key = object.key.slice(s3.base.length);
      // An object no key can name (put there by another tool: "a//b", a backslash) was not written by us.
      if (isValidKey(key)) yield { ...object, key };
    }
    if (token !== undefined) tokens.add(token);
    token = page.next;
    if (token !== undefined && (tokens.has(token) || added === 0))
      throw new StorageUnavailableError(
        `the S3 listing of ${s3.url} does not advance (${tokens.has(token) ? "a continuation token came back" : "a page that says more follow added no object"}); stopped after ${seen.size} objects`,
        "the endpoint is not a working S3 service; check it (--repo, ?endpoint=)",
      );
  } while (token !== undefined);
}

/** One ListObjectsV2 page, retried as a whole; anything but a listing of this bucket and prefix is a failure. */
function listPage(s3: S3Connection, prefix: string, token?: string, maxKeys = 1000): Promise<Page> {
  const query: Record<string, string> = { "list-type": "2", prefix, "max-keys": String(maxKeys) };
  if (token) query["continuation-token"] = token;
  return s3.request("list", { method: "GET", objectName: "", query, returnBody: true }, undefined, async (r) =>
    parseListing(s3, await r.text(), prefix),
  );
}

function parseListing(s3: S3Connection, xml: string, prefix: string): Page {
  const { bucket, endpoint } = s3.config;
  const what = `the listing of ${bucket}/${prefix}`;
  expectDocument(endpoint, xml, "ListBucketResult", what);
  const name = xmlText(xml, "Name");
  const listedPrefix = xmlText(xml, "Prefix") ?? (/<Prefix\s*\/>/.test(xml) ? "" : undefined);
  if (name === undefined || decodeXml(name) !== bucket || decodeXml(listedPrefix ?? "") !== prefix)
    throw unexpectedAnswer(
      endpoint,
      what,
      `a listing of ${name === undefined ? "no bucket" : decodeXml(name)}/${decodeXml(listedPrefix ?? "")}`,
    );
  const objects = [...xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)].map(([, c]) => {
    const key = decodeXml(xmlText(c!, "Key") ?? "");
    const size = xmlText(c!, "Size") ?? "";
    const lastModified = new Date(xmlText(c!, "LastModified") ?? Number.NaN);
    if (!key.startsWith(prefix) || !/^\d+$/.test(size) || Number.isNaN(lastModified.getTime()))
      throw unexpectedAnswer(endpoint, what, "a listing with an entry that is not an object");
    return { key, size: Number(size), lastModified };
  });
  const truncated = xmlText(xml, "IsTruncated") === "true";
  const next = xmlText(xml, "NextContinuationToken");
  if (truncated && !next) throw unexpectedAnswer(endpoint, what, "a listing that says more follow without a continuation token");
  return { objects, next: truncated ? next : undefined };
}
