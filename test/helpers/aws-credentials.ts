/**
 * Credential sources for tests. Temporary credentials come from the test S3 server's real STS API
 * (RGW AssumeRole on the role scripts/s3-server.sh creates); the services that cannot run here (EC2
 * instance metadata, the container credentials endpoint, SSO's portal, a web identity STS) are small
 * stand-ins on 127.0.0.1 that hand those real temporary credentials out, as the real ones would.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { registerSecret } from "./cli.ts";
import { testS3 } from "./s3.ts";

export interface TempCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration: Date;
}

export function testRoleArn(): string {
  const arn = process.env.SQLITE_VAULT_TEST_S3_ROLE_ARN;
  if (!arn) throw new Error("the test S3 server has no STS role: start it with scripts/s3-server.sh (SQLITE_VAULT_TEST_S3_ROLE_ARN)");
  return arn;
}

/** Real temporary credentials: AssumeRole against the test server's STS API, through the SDK. */
export async function assumeTestRole(): Promise<TempCredentials> {
  const s3 = testS3();
  const dir = mkdtempSync(join(tmpdir(), "sqlite-vault-sts-"));
  try {
    writeFileSync(join(dir, "credentials"), `[base]\naws_access_key_id = ${s3.accessKey}\naws_secret_access_key = ${s3.secretKey}\n`);
    writeFileSync(join(dir, "config"), `[profile role]\nrole_arn = ${testRoleArn()}\nsource_profile = base\nregion = ${s3.region}\n`);
    const { fromIni } = await import("@aws-sdk/credential-provider-ini");
    const found = await fromIni({
      profile: "role",
      filepath: join(dir, "credentials"),
      configFilepath: join(dir, "config"),
      ignoreCache: true,
      clientConfig: { endpoint: s3.endpoint },
    })();
    if (!found.sessionToken || !found.expiration) throw new Error("AssumeRole returned no session token");
    registerSecret(found.secretAccessKey);
    registerSecret(found.sessionToken);
    return {
      accessKeyId: found.accessKeyId,
      secretAccessKey: found.secretAccessKey,
      sessionToken: found.sessionToken,
      expiration: found.expiration,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface StandIn {
  url: string;
  /** Requests served, as "METHOD PATH". */
  seen: string[];
  stop(): void;
}

/**
 * EC2 instance metadata, IMDSv2 only: a session token first (PUT), then the role's name and its
 * credentials with that token. `next()` gives the credentials each fetch hands out.
 */
export function startImds(next: () => Promise<TempCredentials>): StandIn {
  const seen: string[] = [];
  const token = `imds-token-${crypto.randomUUID()}`;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      const path = new URL(request.url).pathname;
      seen.push(`${request.method} ${path}`);
      if (request.method === "PUT" && path === "/latest/api/token") return new Response(token);
      if (request.headers.get("x-aws-ec2-metadata-token") !== token) return new Response("", { status: 401 });
      if (path === "/latest/meta-data/iam/security-credentials/") return new Response("vault-role");
      if (path === "/latest/meta-data/iam/security-credentials/vault-role") {
        const c = await next();
        return Response.json({
          Code: "Success",
          Type: "AWS-HMAC",
          AccessKeyId: c.accessKeyId,
          SecretAccessKey: c.secretAccessKey,
          Token: c.sessionToken,
          Expiration: c.expiration.toISOString(),
          LastUpdated: new Date().toISOString(),
        });
      }
      return new Response("", { status: 404 });
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, seen, stop: () => server.stop(true) };
}

/** The ECS/EKS container credentials endpoint: credentials for the right authorization token. */
export function startContainerEndpoint(credentials: TempCredentials, authorization: string): StandIn {
  const seen: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      seen.push(`${request.method} ${new URL(request.url).pathname}`);
      if (request.headers.get("authorization") !== authorization) return new Response("", { status: 403 });
      const c = credentials;
      return Response.json({
        AccessKeyId: c.accessKeyId,
        SecretAccessKey: c.secretAccessKey,
        Token: c.sessionToken,
        Expiration: c.expiration.toISOString(),
      });
    },
  });
  return { url: `http://127.0.0.1:${server.port}/v2/credentials/vault`, seen, stop: () => server.stop(true) };
}

/** An STS endpoint for AssumeRoleWithWebIdentity, which needs an OIDC provider RGW cannot reach here. */
export function startWebIdentitySts(credentials: TempCredentials, expect: { roleArn: string; token: string }): StandIn {
  const seen: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      const form = new URLSearchParams(await request.text());
      seen.push(`${request.method} ${form.get("Action")}`);
      if (
        form.get("Action") !== "AssumeRoleWithWebIdentity" ||
        form.get("RoleArn") !== expect.roleArn ||
        form.get("WebIdentityToken") !== expect.token
      )
        return new Response(
          `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not the expected request</Message></Error></ErrorResponse>`,
          { status: 403, headers: { "content-type": "text/xml" } },
        );
      const c = credentials;
      return new Response(
        `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>${c.accessKeyId}</AccessKeyId><SecretAccessKey>${c.secretAccessKey}</SecretAccessKey><SessionToken>${c.sessionToken}</SessionToken><Expiration>${c.expiration.toISOString()}</Expiration></Credentials><AssumedRoleUser><Arn>${expect.roleArn}/web</Arn><AssumedRoleId>AROA:web</AssumedRoleId></AssumedRoleUser></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>stand-in</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`,
        { headers: { "content-type": "text/xml" } },
      );
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, seen, stop: () => server.stop(true) };
}

/** SSO's portal: GetRoleCredentials for the cached access token. */
export function startSsoPortal(credentials: TempCredentials, accessToken: string): StandIn {
  const seen: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const url = new URL(request.url);
      seen.push(`${request.method} ${url.pathname}`);
      if (url.pathname !== "/federation/credentials" || request.headers.get("x-amz-sso_bearer_token") !== accessToken)
        return Response.json({ message: "unauthorized" }, { status: 401 });
      const c = credentials;
      return Response.json({
        roleCredentials: {
          accessKeyId: c.accessKeyId,
          secretAccessKey: c.secretAccessKey,
          sessionToken: c.sessionToken,
          expiration: c.expiration.getTime(),
        },
      });
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, seen, stop: () => server.stop(true) };
}
