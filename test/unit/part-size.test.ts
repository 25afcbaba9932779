import { describe, expect, test } from "bun:test";
import { DEFAULT_PART_SIZE, partSizeFor } from "../../src/storage/s3.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe("partSizeFor", () => {
  test("small and unknown bodies use the configured size", () => {
    expect(DEFAULT_PART_SIZE).toBe(5 * MiB);
    expect(partSizeFor(DEFAULT_PART_SIZE)).toBe(5 * MiB);
    expect(partSizeFor(DEFAULT_PART_SIZE, 1 * GiB)).toBe(5 * MiB);
    expect(partSizeFor(16 * MiB, 1 * GiB)).toBe(16 * MiB);
  });

  test("big bodies get parts big enough to stay well under S3's 10,000 parts", () => {
    for (const size of [44 * GiB, 45 * GiB, 100 * GiB, 1024 * GiB, 5 * 1024 * GiB]) {
      const part = partSizeFor(DEFAULT_PART_SIZE, size);
      expect(part % MiB).toBe(0);
      expect(Math.ceil(size / part)).toBeLessThanOrEqual(9000);
      // Even a body 10% bigger than its hint fits.
      expect(Math.ceil((size * 1.1) / part)).toBeLessThanOrEqual(10_000);
    }
    expect(partSizeFor(DEFAULT_PART_SIZE, 45 * GiB)).toBeGreaterThan(5 * MiB);
  });

  test("never above S3's 5 GiB part maximum", () => {
    expect(partSizeFor(DEFAULT_PART_SIZE, 100 * 1024 * GiB)).toBe(5 * GiB);
  });
});
