/**
 * s3-lite-client's makeRequest() takes no AbortSignal, so its requests could hang forever. This gives
 * every fetch made inside runWithSignal() the signal of that scope (per-attempt timeouts, Ctrl-C),
 * by wrapping the global fetch once. Calls outside such a scope are passed through untouched.
 */
import { AsyncLocalStorage } from "node:async_hooks";

const scope = new AsyncLocalStorage<AbortSignal>();
let installed = false;

function install(): void {
  if (installed) return;
  installed = true;
  const original = globalThis.fetch;
  const wrapped = ((input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    const signal = scope.getStore();
    if (!signal) return original(input, init);
    const combined = init?.signal ? AbortSignal.any([init.signal, signal]) : signal;
    return original(input, { ...init, signal: combined });
  }) as typeof fetch;
  globalThis.fetch = Object.assign(wrapped, original);
}

/** Run `fn` so that every fetch it starts (directly or through a library) is aborted by `signal`. */
export function runWithSignal<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
  install();
  return scope.run(signal, fn);
}
