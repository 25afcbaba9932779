/**
 * Where a config file's problem is: the line a key path is written on, and the key path as a user
 * writes it ("databases[0].retention"), so every error names both.
 */

/** The 1-based line where a key path is written, found by indentation (best effort). */
export function locate(text: string, keyPath: (string | number)[]): number | undefined {
  const lines = text.split(/\r?\n/);
  let from = 0;
  let indent = -1;
  let line: number | undefined;
  for (const segment of keyPath) {
    let found = -1;
    if (typeof segment === "number") {
      let seen = -1;
      for (let i = from; i < lines.length; i++) {
        const m = /^(\s*)-(\s|$)/.exec(lines[i]!);
        if (!m) continue;
        if (m[1]!.length <= indent) break;
        if (++seen === segment) {
          found = i;
          indent = m[1]!.length;
          break;
        }
      }
    } else {
      const pattern = new RegExp(`^(\\s*(?:-\\s+)?)${segment.replace(/[-]/g, "\\-")}\\s*:`);
      for (let i = from; i < lines.length; i++) {
        const m = pattern.exec(lines[i]!);
        if (m) {
          found = i;
          indent = m[1]!.length;
          break;
        }
      }
    }
    if (found < 0) return line;
    line = found + 1;
    from = typeof segment === "number" ? found : found + 1;
  }
  return line;
}

export function formatPath(keyPath: (string | number)[]): string {
  if (keyPath.length === 0) return "the file";
  return keyPath.map((s, i) => (typeof s === "number" ? `[${s}]` : i === 0 ? s : `.${s}`)).join("");
}
