/**
 * cron's HTTP listener (--listen): GET /health is JSON, 503 once any database's last run failed;
 * GET /metrics is the Prometheus text format. It reads the daemon's state and changes nothing.
 */
import { UsageError, VaultError } from "../errors.ts";
import type { DatabaseHealth } from "./runner.ts";

export interface ListenAddress {
  hostname: string;
  port: number;
}

export interface StatusSources {
  health: () => { stopping: boolean; databases: DatabaseHealth[] };
  metrics: () => string;
}

export interface StatusServer {
  url: string;
  /** Close the listener and any open connection. */
  stop: () => void;
}

/** Parse `--listen [HOST:]PORT` (HOST defaults to 127.0.0.1; brackets around IPv6). Throws UsageError. */
export function parseListenAddress(value: string): ListenAddress {
  const match = /^(?:(\[[^\]]+\]|[^:]+):)?(\d+)$/.exec(value);
  const port = Number(match?.[2]);
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--listen ${value} is not HOST:PORT`, "for example --listen 127.0.0.1:9090");
  return { hostname: match[1]?.replace(/^\[|\]$/g, "") ?? "127.0.0.1", port };
}

/** Bind and serve. Throws VaultError when the address cannot be bound (a busy port). */
export function startStatusServer({ hostname, port }: ListenAddress, sources: StatusSources): StatusServer {
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({ hostname, port, fetch: (request) => respond(request, sources) });
  } catch (error) {
    throw new VaultError(`cannot listen on ${hostname}:${port}: ${(error as Error).message}`, "choose another --listen port");
  }
  return { url: `http://${server.hostname}:${server.port}`, stop: () => server.stop(true) };
}

function respond(request: Request, sources: StatusSources): Response {
  const path = new URL(request.url).pathname;
  if (request.method !== "GET") return new Response("method not allowed\n", { status: 405 });
  if (path === "/health") {
    const { stopping, databases } = sources.health();
    const ok = databases.every((d) => d.lastRunOk !== false);
    return Response.json({ ok, stopping, databases }, { status: ok ? 200 : 503 });
  }
  if (path === "/metrics") return new Response(sources.metrics(), { headers: { "content-type": "text/plain; version=0.0.4" } });
  return new Response("not found\n", { status: 404 });
}
