/**
 * S3's multipart part sizes, for the S3 backend and for the settings that default to them. A leaf
 * (it imports nothing), so configuration can name the default without loading the S3 client.
 */

/** S3's smallest part (but the last). */
export const MIN_PART_SIZE = 5 * 1024 * 1024;

/** The part size unless one is configured; why 5 MiB: see storage/s3.ts. */
export const DEFAULT_PART_SIZE = MIN_PART_SIZE;
