/**
 * Layered settings. A value may be given in several places (a flag, a variable, the config file, an
 * AWS profile); the first place that gives one decides, and its name travels with the value so a bad
 * one is reported under the name the user wrote. Each setting's order of places stays beside the
 * setting (config/settings.ts, config/keys.ts, storage/index.ts); this is the one way they are read.
 */

/** One place a value may come from: its value there (undefined or null when not given) and its name, for messages. */
export interface Layer<T, From extends string = string> {
  from: From;
  value: T | undefined | null;
}

/** The value that decided, and the name of the place that gave it. */
export interface Picked<T, From extends string = string> {
  value: T;
  from: From;
}

/** The default test of "given": an empty flag or variable counts as unset, as in a shell's ${VAR:-default}. */
export function isNonEmpty(value: unknown): boolean {
  return value !== "";
}

/**
 * Pure: the first layer, highest precedence first, whose value is defined and passes `given`
 * (default: not the empty string), with its name; undefined when no layer gives one.
 */
export function pickLayer<T, From extends string>(
  layers: readonly Layer<T, From>[],
  given: (value: T) => boolean = isNonEmpty,
): Picked<T, From> | undefined {
  for (const { from, value } of layers) if (value !== undefined && value !== null && given(value)) return { value, from };
  return undefined;
}
