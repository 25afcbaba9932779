#!/usr/bin/env bun
/**
 * The measurement behind src/storage/s3/download.ts's download in parts: one object downloaded
 * through a proxy that serves each connection `latency` late and at most `rate` (a hosted S3 far
 * away), in one connection and in parts over several, alternating; prints the medians.
 *
 *   eval "$(scripts/s3-server.sh start)"; bun scripts/bench-download.ts [MiB=160] [runs=3]
 */
import { S3Client as LiteClient } from "@bradenmacdonald/s3-lite-client";
import { DOWNLOAD_CONNECTIONS, DOWNLOAD_PART_BYTES, type DownloadTuning } from "../src/storage/s3/download.ts";
import { S3Storage } from "../src/storage/s3.ts";
import { readAll } from "../src/util/streams.ts";
import { startFaultProxy } from "../test/helpers/fault-proxy.ts";

const mib = Number(process.argv[2] ?? 160);
const runs = Number(process.argv[3] ?? 3);
const endpoint = process.env.SQLITE_VAULT_TEST_S3_ENDPOINT;
const accessKeyId = process.env.SQLITE_VAULT_TEST_S3_ACCESS_KEY;
const secretAccessKey = process.env.SQLITE_VAULT_TEST_S3_SECRET_KEY;
if (!endpoint || !accessKeyId || !secretAccessKey) throw new Error('start the test S3 server first: eval "$(scripts/s3-server.sh start)"');

const bucket = `bench-download-${Date.now().toString(36)}`;
const admin = new LiteClient({
  endPoint: endpoint,
  region: "us-east-1",
  accessKey: accessKeyId,
  secretKey: secretAccessKey,
  pathStyle: true,
});
await admin.makeBucket(bucket);
const proxy = await startFaultProxy(endpoint);

const storage = (download: DownloadTuning) =>
  new S3Storage({
    bucket,
    prefix: "",
    endpoint: proxy.url,
    region: "us-east-1",
    pathStyle: true,
    credentials: { accessKeyId, secretAccessKey, source: "bench" },
    download,
  });

try {
  // Incompressible, as a stored backup is.
  const data = new Uint8Array(mib * 1024 * 1024);
  for (let at = 0; at < data.length; at += 65536) crypto.getRandomValues(data.subarray(at, at + 65536));
  await storage({}).put("object", data);

  const ways: [string, DownloadTuning][] = [
    ["one connection", { connections: 1 }],
    [`parts of ${DOWNLOAD_PART_BYTES / 1024 / 1024} MiB, ${DOWNLOAD_CONNECTIONS} at once`, {}],
  ];
  const links = [
    { label: "loopback, no limit", rate: 0, latencyMs: 0 },
    { label: "100 MB/s per connection, 20 ms", rate: 100e6, latencyMs: 20 },
    { label: "25 MB/s per connection, 50 ms", rate: 25e6, latencyMs: 50 },
  ];
  console.log(`download of a ${mib} MiB object, medians of ${runs}`);
  console.log("| link | download | seconds | MB/s |");
  console.log("|:---|:---|---:|---:|");
  for (const link of links) {
    proxy.clear();
    if (link.rate)
      proxy.add({
        method: "GET",
        times: Number.POSITIVE_INFINITY,
        fault: { kind: "throttle", bytesPerSecond: link.rate, latencyMs: link.latencyMs },
      });
    const times = ways.map(() => [] as number[]);
    for (let run = 0; run < runs; run++)
      for (const [i, [, tuning]] of ways.entries()) {
        const started = performance.now();
        const bytes = await readAll(await storage(tuning).get("object"));
        times[i]!.push((performance.now() - started) / 1000);
        if (bytes.length !== data.length) throw new Error("short download");
      }
    for (const [i, [way]] of ways.entries()) {
      const sorted = times[i]!.sort((a, b) => a - b);
      const median = sorted[Math.floor(sorted.length / 2)]!;
      console.log(`| ${link.label} | ${way} | ${median.toFixed(2)} | ${((mib * 1024 * 1024) / median / 1e6).toFixed(0)} |`);
    }
  }
} finally {
  await proxy.stop();
  await admin.deleteObject("object").catch(() => {});
  await admin.removeBucket(bucket).catch(() => {});
}
