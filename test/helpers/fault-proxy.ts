/**
 * A fault-injecting HTTP proxy on 127.0.0.1 in front of the real S3 server. It forwards requests
 * byte for byte (the Host header too, so signatures stay valid) and, for requests that match a rule,
 * injects a fault instead:
 *   refuse          close the connection at once, without a response
 *   reset-request   read part of the request body, then reset the connection
 *   reset-response  forward the request, send the headers and part of the body, then reset
 *   delay           hold the request for `delayMs` before forwarding (past the client's timeout)
 *   status          answer with an S3 error document: 500, 503, SlowDown (503), or any status and code
 *   error-200       forward the request, then answer 200 with an <Error> body
 *   down            stop listening for `downMs` (connections are refused), then listen again
 *   fake-204        answer 204 No Content without forwarding (a delete that is acknowledged, not done)
 *   drop-response   forward the request and let the server finish it, then reset the connection
 *                   without a response (a request done whose answer was lost)
 *   headers         forward the request and the answer, with the headers `headers` returns (another clock)
 *   rewrite         forward the request, then answer with what `rewrite` makes of the server's
 *                   status and body (a duplicated listing, a 200 that is not what was asked for)
 *   throttle        forward the request, then its answer `latencyMs` late and at most `bytesPerSecond`
 *                   (a hosted S3 far away, serving each connection at a fraction of the link)
 */
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";

export type Fault =
  | { kind: "refuse" }
  | { kind: "reset-request"; afterBytes?: number }
  | { kind: "reset-response"; afterBytes?: number }
  | { kind: "delay"; delayMs: number }
  | { kind: "status"; status: number; code?: string }
  | { kind: "error-200"; code?: string }
  | { kind: "down"; downMs: number }
  | { kind: "fake-204" }
  | { kind: "drop-response" }
  | { kind: "headers"; headers: (headers: Record<string, string | string[] | undefined>) => Record<string, string | string[] | undefined> }
  | { kind: "throttle"; bytesPerSecond: number; latencyMs?: number }
  | { kind: "rewrite"; rewrite: (response: { status: number; body: string }) => { status: number; body: string; contentType?: string } };

export interface FaultRule {
  /** Which requests: method and a test on the path with its query. */
  method?: string;
  match?: (path: string) => boolean;
  /** A test on the request's headers (a Range, say). */
  headers?: (headers: IncomingHttpHeaders) => boolean;
  fault: Fault;
  /** How many matching requests get the fault (default 1; Infinity for a persistent fault). */
  times?: number;
  /** Let this many matching requests pass this rule first (counting those another rule faulted). */
  skip?: number;
}

export interface FaultProxy {
  url: string;
  add(rule: FaultRule): void;
  /** Remove every rule and forget the faults injected and the requests seen so far. */
  clear(): void;
  /** Faults injected so far, as "KIND METHOD PATH". */
  injected: string[];
  /** Every request so far, as "METHOD PATH" and its Range header when it has one ("GET /b/k bytes=0-99"). */
  requests: string[];
  stop(): Promise<void>;
}

export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream);
  const rules: (FaultRule & { seen: number; hits: number })[] = [];
  const injected: string[] = [];
  const requests: string[] = [];
  let server: Server;
  let port = 0;

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? "/";
    requests.push(`${req.method} ${path}${req.headers.range ? ` ${req.headers.range}` : ""}`);
    // Every rule counts the requests it matches, whether or not another rule injects a fault.
    const matching = rules.filter(
      (r) => (!r.method || r.method === req.method) && (!r.match || r.match(path)) && (!r.headers || r.headers(req.headers)),
    );
    for (const r of matching) r.seen++;
    const rule = matching.find((r) => r.seen > (r.skip ?? 0) && r.hits < (r.times ?? 1));
    if (!rule) return forward(req, res);
    rule.hits++;
    const fault = rule.fault;
    injected.push(`${fault.kind} ${req.method} ${path}`);
    switch (fault.kind) {
      case "refuse":
        req.socket.destroy();
        return;
      case "reset-request": {
        let received = 0;
        req.on("data", (chunk: Buffer) => {
          received += chunk.length;
          if (received >= (fault.afterBytes ?? 1)) req.socket.destroy();
        });
        req.on("end", () => req.socket.destroy());
        return;
      }
      case "reset-response":
        return forward(req, res, { cutAfter: fault.afterBytes ?? 1000 });
      case "delay":
        setTimeout(() => forward(req, res), fault.delayMs);
        return;
      case "status":
        req.resume();
        req.on("end", () => {
          res.writeHead(fault.status, { "content-type": "application/xml" });
          res.end(errorXml(fault.code ?? (fault.status === 500 ? "InternalError" : "ServiceUnavailable")));
        });
        return;
      case "error-200":
        return forward(req, res, { replaceWith: { status: 200, body: errorXml(fault.code ?? "InternalError") } });
      case "drop-response":
        return forward(req, res, { drop: true });
      case "rewrite":
        return forward(req, res, { rewrite: fault.rewrite });
      case "headers":
        return forward(req, res, { headers: fault.headers });
      case "throttle":
        setTimeout(() => forward(req, res, { bytesPerSecond: fault.bytesPerSecond }), fault.latencyMs ?? 0);
        return;
      case "fake-204":
        req.resume();
        req.on("end", () => {
          res.writeHead(204);
          res.end();
        });
        return;
      case "down":
        req.socket.destroy();
        server.close();
        server.closeAllConnections?.();
        setTimeout(() => listen(port), fault.downMs);
        return;
    }
  };

  function forward(
    req: IncomingMessage,
    res: ServerResponse,
    options: {
      cutAfter?: number;
      replaceWith?: { status: number; body: string };
      drop?: boolean;
      rewrite?: Extract<Fault, { kind: "rewrite" }>["rewrite"];
      headers?: Extract<Fault, { kind: "headers" }>["headers"];
      bytesPerSecond?: number;
    } = {},
  ) {
    const upstreamReq = httpRequest(
      { host: target.hostname, port: Number(target.port), method: req.method, path: req.url, headers: req.headers },
      (upstreamRes) => {
        if (options.drop) {
          upstreamRes.resume();
          upstreamRes.on("end", () => res.socket?.destroy());
          return;
        }
        if (options.rewrite) {
          const chunks: Buffer[] = [];
          upstreamRes.on("data", (chunk: Buffer) => chunks.push(chunk));
          upstreamRes.on("end", () => {
            const out = options.rewrite!({ status: upstreamRes.statusCode ?? 502, body: Buffer.concat(chunks).toString("utf8") });
            res.writeHead(out.status, { "content-type": out.contentType ?? "application/xml" });
            res.end(out.body);
          });
          return;
        }
        if (options.replaceWith) {
          upstreamRes.resume();
          upstreamRes.on("end", () => {
            res.writeHead(options.replaceWith!.status, { "content-type": "application/xml" });
            res.end(options.replaceWith!.body);
          });
          return;
        }
        res.writeHead(upstreamRes.statusCode ?? 502, options.headers ? options.headers({ ...upstreamRes.headers }) : upstreamRes.headers);
        if (options.bytesPerSecond) return throttle(upstreamRes, res, options.bytesPerSecond);
        if (options.cutAfter === undefined) return upstreamRes.pipe(res);
        let sent = 0;
        upstreamRes.on("data", (chunk: Buffer) => {
          if (sent + chunk.length >= options.cutAfter!) {
            res.write(chunk.subarray(0, Math.max(0, options.cutAfter! - sent)));
            upstreamRes.destroy();
            setTimeout(() => res.socket?.destroy(), 20);
            return;
          }
          sent += chunk.length;
          res.write(chunk);
        });
        upstreamRes.on("end", () => res.end());
      },
    );
    upstreamReq.on("error", () => res.socket?.destroy());
    req.pipe(upstreamReq);
  }

  function listen(at: number): Promise<void> {
    server = createServer(handler);
    server.keepAliveTimeout = 1000;
    return new Promise((resolve) => server.listen(at, "127.0.0.1", () => resolve()));
  }

  await listen(0);
  port = (server!.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    add: (rule) => rules.push({ ...rule, seen: 0, hits: 0 }),
    clear: () => {
      rules.length = 0;
      injected.length = 0;
      requests.length = 0;
    },
    injected,
    requests,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/**
 * Pipe `from` to `to` no faster than `bytesPerSecond`: each chunk is written once its bytes are due,
 * in order, and the end after the last one.
 */
function throttle(from: IncomingMessage, to: ServerResponse, bytesPerSecond: number): void {
  const started = performance.now();
  let sent = 0;
  let writes = Promise.resolve();
  const due = () => Bun.sleep(Math.max(0, started + (sent / bytesPerSecond) * 1000 - performance.now()));
  from.on("data", (chunk: Buffer) => {
    sent += chunk.length;
    from.pause();
    const wait = due();
    writes = writes
      .then(() => wait)
      .then(() => {
        to.write(chunk);
        from.resume();
      });
  });
  from.on("end", () => {
    writes = writes.then(() => void to.end());
  });
  to.on("close", () => from.destroy());
}

function errorXml(code: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>`;
}

/** Matchers for S3 requests by kind. */
export const on = {
  partUpload: (path: string) => path.includes("partNumber="),
  initiate: (path: string) => /[?&]uploads(=|&|$)/.test(path),
  complete: (path: string) => path.includes("uploadId=") && !path.includes("partNumber="),
  object: (suffix: string) => (path: string) => path.split("?")[0]!.endsWith(suffix),
  list: (path: string) => path.includes("list-type=2"),
};

/** Listings rewritten the ways a misbehaving S3 answers them, for every listing request. */
export const listings = {
  /** Every <Contents> entry twice, in place. */
  repeatingEntries: (): FaultRule => ({
    method: "GET",
    match: on.list,
    times: Infinity,
    fault: {
      kind: "rewrite",
      rewrite: ({ status, body }) => ({ status, body: body.replace(/<Contents>[\s\S]*?<\/Contents>/g, (c) => c + c) }),
    },
  }),
  /** "There is more", with the same continuation token every time. */
  neverEnding: (token = "same"): FaultRule => ({
    method: "GET",
    match: on.list,
    times: Infinity,
    fault: {
      kind: "rewrite",
      rewrite: ({ status, body }) => ({
        status,
        body: body.replace(
          /<IsTruncated>false<\/IsTruncated>/,
          `<IsTruncated>true</IsTruncated><NextContinuationToken>${token}</NextContinuationToken>`,
        ),
      }),
    },
  }),
};
