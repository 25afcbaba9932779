/**
 * Healthcheck pings in the healthchecks.io convention: URL/start when a run begins, URL on success,
 * URL/fail on failure, each with a short plain-text body. A ping that fails is logged and never fails
 * the run. The URL itself often embeds a secret token, so it is never printed.
 */
import type { Logger } from "../logger.ts";

export type PingKind = "start" | "success" | "fail";

const PING_TIMEOUT_MS = 10_000;

export function pingUrl(base: string, kind: PingKind): string {
  const trimmed = base.replace(/\/+$/, "");
  return kind === "success" ? trimmed : `${trimmed}/${kind}`;
}

/** Send one ping; resolves whatever happens. */
export async function ping(base: string | undefined, kind: PingKind, body: string, log: Logger): Promise<void> {
  if (!base) return;
  try {
    const response = await fetch(pingUrl(base, kind), {
      method: "POST",
      body: body.slice(0, 10_000),
      headers: { "content-type": "text/plain; charset=utf-8" },
      signal: AbortSignal.timeout(PING_TIMEOUT_MS),
    });
    await response.body?.cancel();
    if (!response.ok) log.warn(`healthcheck ping (${kind}) answered HTTP ${response.status}; the backup itself is unaffected`);
  } catch (error) {
    // The host and the error's code only: a ping URL's path is its secret (healthchecks.io's UUID).
    const code = (error as { code?: string }).code;
    const reason =
      (error as Error).name === "TimeoutError" ? `no answer within ${PING_TIMEOUT_MS / 1000} s` : code ? `${code}` : (error as Error).name;
    log.warn(`healthcheck ping (${kind}) to ${hostOf(base)} failed: ${reason}; the backup itself is unaffected`);
  }
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return "the healthcheck URL";
  }
}
