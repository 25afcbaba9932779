import { describe, expect, test } from "bun:test";
import { pickLayer } from "../../src/util/layers.ts";

describe("pickLayer: the first layer that gives a value decides", () => {
  const cases: [label: string, layers: { from: string; value: string | boolean | null | undefined }[], want: unknown][] = [
    [
      "none given",
      [
        { from: "--a", value: undefined },
        { from: "A", value: null },
      ],
      undefined,
    ],
    [
      "an empty string counts as unset",
      [
        { from: "--a", value: "" },
        { from: "A", value: "x" },
      ],
      { value: "x", from: "A" },
    ],
    [
      "the highest wins",
      [
        { from: "--a", value: "1" },
        { from: "A", value: "2" },
      ],
      { value: "1", from: "--a" },
    ],
    [
      "false is a value",
      [
        { from: "--a", value: false },
        { from: "A", value: true },
      ],
      { value: false, from: "--a" },
    ],
  ];
  for (const [label, layers, want] of cases) test(label, () => expect(pickLayer(layers)).toEqual(want as never));
  test("a custom test of given", () => {
    const layers = [
      { from: "flags", value: [] as string[] },
      { from: "file", value: ["k"] },
    ];
    expect(pickLayer(layers, (keys) => keys.length > 0)).toEqual({ value: ["k"], from: "file" });
  });
});
