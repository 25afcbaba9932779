#!/usr/bin/env bun
/**
 * The measurement behind src/storage/s3.ts's choice of upload path: uploads one incompressible object
 * through our multipart upload (s3-lite-client makeRequest) and through Bun.S3Client, alternating,
 * and prints wall time, CPU time and peak RSS growth for each.
 *
 *   eval "$(scripts/s3-server.sh start)"; bun scripts/bench-s3-upload.ts [MiB=256] [runs=3]
 */
import { S3Client as LiteClient } from "@bradenmacdonald/s3-lite-client";
import { S3Storage } from "../src/storage/s3.ts";

const mib = Number(process.argv[2] ?? 256);
const runs = Number(process.argv[3] ?? 3);
const endpoint = process.env.SQLITE_VAULT_TEST_S3_ENDPOINT;
const accessKeyId = process.env.SQLITE_VAULT_TEST_S3_ACCESS_KEY;
const secretAccessKey = process.env.SQLITE_VAULT_TEST_S3_SECRET_KEY;
if (!endpoint || !accessKeyId || !secretAccessKey) throw new Error('start the test S3 server first: eval "$(scripts/s3-server.sh start)"');
const bucket = `bench-upload-${Date.now().toString(36)}`;
const lite = new LiteClient({
  endPoint: endpoint,
  region: "us-east-1",
  accessKey: accessKeyId,
  secretKey: secretAccessKey,
  pathStyle: true,
});
await lite.makeBucket(bucket);

const chunk = crypto.getRandomValues(new Uint8Array((1024 * 1024) / 16)).slice(); // refill per MiB below
function source(): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent++ >= mib) return c.close();
      const block = new Uint8Array(1024 * 1024);
      for (let i = 0; i < 16; i++) block.set(chunk, i * chunk.length);
      block[0] = sent & 0xff;
      c.enqueue(block);
    },
  });
}

const ours = new S3Storage({
  bucket,
  prefix: "",
  endpoint,
  region: "us-east-1",
  pathStyle: true,
  credentials: { accessKeyId, secretAccessKey, source: "bench" },
});
const bun = new Bun.S3Client({ endpoint, bucket, accessKeyId, secretAccessKey, region: "us-east-1" });

async function measure(label: string, fn: () => Promise<unknown>) {
  Bun.gc(true);
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  clearInterval(timer);
  console.log(
    `${label.padEnd(34)} ${wall.toFixed(2)} s  ${(mib / wall).toFixed(0)} MiB/s  cpu ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s  rss +${((peak - rss0) / 2 ** 20).toFixed(0)} MiB`,
  );
}

console.log(`uploading ${mib} MiB to ${endpoint}, ${runs} runs each`);
for (let i = 0; i < runs; i++) {
  await measure("s3-lite-client + own multipart", () => ours.put("ours", source()));
  await measure("Bun.S3Client write (16 MiB x 4)", () =>
    bun.file("bun", { partSize: 16 * 1024 * 1024, queueSize: 4 }).write(new Response(source())),
  );
}
for await (const o of lite.listObjects({ bucketName: bucket })) await lite.deleteObject(o.key, { bucketName: bucket });
await lite.removeBucket(bucket);
