import { describe, expect, test } from "bun:test";
import { frame } from "../../src/progress.ts";

const MiB = 1024 * 1024;

describe("progress frame", () => {
  const cases: [string, Parameters<typeof frame>, string][] = [
    ["first frame: no rate or ETA yet", ["backing up app", 0, 64 * MiB, 0], "backing up app: 0 B of 64.0 MiB (0%)"],
    ["too early for a rate", ["backing up app", 8 * MiB, 64 * MiB, 200], "backing up app: 8.0 MiB of 64.0 MiB (12%)"],
    ["rate and ETA", ["downloading app", 16 * MiB, 64 * MiB, 2000], "downloading app: 16.0 MiB of 64.0 MiB (25%), 8.0 MiB/s, ETA 6 s"],
    [
      "ETA in minutes",
      ["downloading app", 1 * MiB, 100 * MiB, 1000],
      "downloading app: 1.0 MiB of 100 MiB (1%), 1.0 MiB/s, ETA 1 min 39 s",
    ],
    [
      "ETA in hours",
      ["backing up big", 1 * MiB, 10 * 1024 * MiB, 1000],
      "backing up big: 1.0 MiB of 10.0 GiB (0%), 1.0 MiB/s, ETA 2 h 50 min",
    ],
    [
      "more than the total (a re-read) never shows past 100%",
      ["verifying 1/2 backup(s)", 70 * MiB, 64 * MiB, 1000],
      "verifying 1/2 backup(s): 64.0 MiB of 64.0 MiB (100%), 64.0 MiB/s, ETA 0 s",
    ],
    ["an empty total", ["backing up empty", 0, 0, 0], "backing up empty: 0 B of 0 B (100%)"],
    ["unknown total: elapsed time", ["checking app (integrity_check)", 0, undefined, 3240], "checking app (integrity_check)… 3.2 s"],
  ];
  for (const [what, args, expected] of cases) test(what, () => expect(frame(...args)).toBe(expected));
});
