/**
 * Every AWS credential source through the compiled binary, against the real S3 server: temporary
 * credentials with session tokens from its STS API, handed out by each source as AWS would. Nothing
 * but the source under test is in the binary's environment (no AWS_ACCESS_KEY_ID).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  assumeTestRole,
  startContainerEndpoint,
  startImds,
  startSsoPortal,
  startWebIdentitySts,
  testRoleArn,
  type StandIn,
  type TempCredentials,
} from "../helpers/aws-credentials.ts";
import { runCli } from "../helpers/cli.ts";
import { createBankDb, removeTempDirs, tempDir } from "../helpers/db.ts";
import { createTestBucket, testS3 } from "../helpers/s3.ts";

setDefaultTimeout(120_000);

let bucket: Awaited<ReturnType<typeof createTestBucket>>;
let role: TempCredentials;
const standIns: StandIn[] = [];
beforeAll(async () => {
  bucket = await createTestBucket("creds");
  role = await assumeTestRole();
});
afterAll(async () => {
  for (const s of standIns) s.stop();
  await bucket?.cleanup();
  removeTempDirs();
});

/** An environment with no credentials and no AWS files but those the test writes into `home`. */
function bareEnv(home: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return { HOME: home, AWS_EC2_METADATA_DISABLED: "true", AWS_REGION: testS3().region, ...extra };
}

/** Back up a fresh database under `label` with `env`, list it, and ask doctor where the credentials came from. */
async function backupWith(
  label: string,
  env: Record<string, string | undefined>,
  repo = `s3://${bucket.bucket}/${label}?endpoint=${encodeURIComponent(testS3().endpoint)}`,
) {
  const dir = tempDir(label);
  const db = join(dir, "app.db");
  createBankDb(db);
  const backup = await runCli(["backup", db, "--repo", repo, "--json"], { env });
  expect({ code: backup.exitCode, stderr: backup.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
  const list = await runCli(["list", "--repo", repo, "--json"], { env });
  expect(list.exitCode).toBe(0);
  expect(JSON.parse(list.stdout).backups.map((b: { id: string }) => b.id)).toEqual([JSON.parse(backup.stdout).id]);
  const doctor = await runCli(["doctor", "--repo", repo, "--json"], { env });
  const credentials = JSON.parse(doctor.stdout).checks.find((c: { name: string }) => c.name === "credentials accepted");
  return { credentials: credentials.detail as string, doctor };
}

describe("credential sources", () => {
  test("EC2 instance metadata (IMDSv2: a session token first)", async () => {
    const imds = startImds(async () => role);
    standIns.push(imds);
    const home = tempDir("imds-home");
    const { credentials } = await backupWith(
      "imds",
      bareEnv(home, { AWS_EC2_METADATA_DISABLED: undefined, AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url }),
    );
    expect(credentials).toContain("EC2 instance metadata (IMDS)");
    expect(imds.seen).toContain("PUT /latest/api/token");
    expect(imds.seen).toContain("GET /latest/meta-data/iam/security-credentials/vault-role");
  });

  test("the container credentials endpoint (ECS task role, EKS pod identity)", async () => {
    const endpoint = startContainerEndpoint(role, "container-auth-token");
    standIns.push(endpoint);
    const home = tempDir("ecs-home");
    const { credentials } = await backupWith(
      "ecs",
      bareEnv(home, { AWS_CONTAINER_CREDENTIALS_FULL_URI: endpoint.url, AWS_CONTAINER_AUTHORIZATION_TOKEN: "container-auth-token" }),
    );
    expect(credentials).toContain("the container credentials endpoint");
    expect(endpoint.seen.length).toBeGreaterThan(0);
  });

  test("a profile that assumes a role (role_arn, source_profile) through STS, with the endpoint from ~/.aws/config's services section", async () => {
    const home = tempDir("role-home");
    const s3 = testS3();
    mkdirSync(join(home, ".aws"));
    writeFileSync(
      join(home, ".aws", "credentials"),
      `[base]\naws_access_key_id = ${s3.accessKey}\naws_secret_access_key = ${s3.secretKey}\n`,
    );
    writeFileSync(
      join(home, ".aws", "config"),
      `[profile backup]\nrole_arn = ${testRoleArn()}\nsource_profile = base\nregion = ${s3.region}\nservices = local\n\n[services local]\ns3 =\n  endpoint_url = ${s3.endpoint}\nsts =\n  endpoint_url = ${s3.endpoint}\n`,
    );
    // No endpoint anywhere but the config file: the repository URL names only the bucket.
    const { credentials } = await backupWith(
      "role",
      bareEnv(home, { AWS_PROFILE: "backup", AWS_REGION: undefined }),
      `s3://${bucket.bucket}/role`,
    );
    expect(credentials).toContain("a role assumed by profile backup");
  });

  test("a profile's endpoint_url and region, and AWS_CONFIG_FILE", async () => {
    const home = tempDir("endpoint-home");
    const s3 = testS3();
    const config = join(home, "aws-config");
    writeFileSync(
      config,
      `[default]\nendpoint_url = ${s3.endpoint}\nregion = ${s3.region}\naws_access_key_id = ${s3.accessKey}\naws_secret_access_key = ${s3.secretKey}\n`,
    );
    const { credentials } = await backupWith(
      "endpoint",
      bareEnv(home, { AWS_CONFIG_FILE: config, AWS_REGION: undefined }),
      `s3://${bucket.bucket}/endpoint`,
    );
    expect(credentials).toContain("profile default");
  });

  test("credential_process", async () => {
    const home = tempDir("process-home");
    const script = join(home, "credentials.sh");
    const c = role;
    writeFileSync(
      script,
      `#!/bin/sh\necho '${JSON.stringify({ Version: 1, AccessKeyId: c.accessKeyId, SecretAccessKey: c.secretAccessKey, SessionToken: c.sessionToken, Expiration: c.expiration.toISOString() })}'\n`,
    );
    chmodSync(script, 0o700);
    mkdirSync(join(home, ".aws"));
    writeFileSync(join(home, ".aws", "config"), `[profile proc]\ncredential_process = ${script}\n`);
    const { credentials } = await backupWith("process", bareEnv(home, { AWS_PROFILE: "proc" }));
    expect(credentials).toContain("the credential_process of profile proc");
  });

  test("a web identity token (EKS service-account roles: AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN)", async () => {
    const token = "eyJ.web-identity.token";
    const sts = startWebIdentitySts(role, { roleArn: testRoleArn(), token });
    standIns.push(sts);
    const home = tempDir("web-home");
    writeFileSync(join(home, "token"), token);
    const { credentials } = await backupWith(
      "web",
      bareEnv(home, {
        AWS_WEB_IDENTITY_TOKEN_FILE: join(home, "token"),
        AWS_ROLE_ARN: testRoleArn(),
        AWS_ROLE_SESSION_NAME: "vault",
        AWS_ENDPOINT_URL_STS: sts.url,
      }),
    );
    expect(credentials).toContain("web identity");
    expect(sts.seen).toContain("POST AssumeRoleWithWebIdentity");
  });

  test("SSO: a cached access token traded for role credentials", async () => {
    const accessToken = "sso-access-token-0123456789";
    const portal = startSsoPortal(role, accessToken);
    standIns.push(portal);
    const home = tempDir("sso-home");
    const startUrl = "https://vault-test.awsapps.com/start";
    mkdirSync(join(home, ".aws", "sso", "cache"), { recursive: true });
    const cacheName = new Bun.CryptoHasher("sha1").update(startUrl).digest("hex");
    writeFileSync(
      join(home, ".aws", "sso", "cache", `${cacheName}.json`),
      JSON.stringify({ startUrl, region: "us-east-1", accessToken, expiresAt: new Date(Date.now() + 3600_000).toISOString() }),
    );
    writeFileSync(
      join(home, ".aws", "config"),
      `[profile sso]\nsso_start_url = ${startUrl}\nsso_region = us-east-1\nsso_account_id = 123456789012\nsso_role_name = Backup\nservices = local\n\n[services local]\nsso =\n  endpoint_url = ${portal.url}\n`,
    );
    const { credentials } = await backupWith("sso", bareEnv(home, { AWS_PROFILE: "sso" }));
    expect(credentials).toContain("SSO of profile sso");
    expect(portal.seen).toContain("GET /federation/credentials");
  });

  test("no source at all is anonymous, and the refusal says where credentials are looked for", async () => {
    const home = tempDir("anon-home");
    const dir = tempDir("anon");
    createBankDb(join(dir, "app.db"));
    const r = await runCli(
      ["backup", join(dir, "app.db"), "--repo", `s3://${bucket.bucket}/anon?endpoint=${encodeURIComponent(testS3().endpoint)}`],
      { env: bareEnv(home) },
    );
    expect(r.exitCode).toBe(12);
    expect(r.stderr).toContain("no credentials were found");
  });

  test("a configured source that fails is an authentication error naming it, never a secret", async () => {
    const home = tempDir("fail-home");
    mkdirSync(join(home, ".aws"));
    writeFileSync(join(home, ".aws", "config"), `[profile broken]\ncredential_process = /bin/false\n`);
    const dir = tempDir("fail");
    createBankDb(join(dir, "app.db"));
    const r = await runCli(
      ["backup", join(dir, "app.db"), "--repo", `s3://${bucket.bucket}/fail?endpoint=${encodeURIComponent(testS3().endpoint)}`],
      { env: bareEnv(home, { AWS_PROFILE: "broken" }) },
    );
    expect(r.exitCode).toBe(12);
    expect(r.stderr).toContain("cannot get AWS credentials (profile broken)");
    expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
  });
});
