/**
 * `pnpm start` as a person runs it: embedded PostgreSQL, nats-server and redis-server started by the
 * stack itself (no URLs given), the five subgraphs and the gateway; a query answered through the
 * gateway and the web app at /; Ctrl-C stops everything; a second start keeps the data.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import pg from "pg";
import { NATS_SERVICE_USERS, natsServers } from "@vaultpay/events";
import { REPO_ROOT, freePort, freePortRun, generateDevSecrets, withDatabase } from "@vaultpay/stack";
import { startTestNats, startTestRedis, startTestSmtpServer, testServerUrl, waitUntil, type TestSmtpServer } from "@vaultpay/testing";

interface RunningStack {
  child: ChildProcess;
  lines: string[];
  gatewayUrl: string;
  postgresHost: string;
  exited: Promise<number | null>;
}

async function startStack(dataDir: string, gatewayPort: number): Promise<RunningStack> {
  const env: NodeJS.ProcessEnv = { ...process.env, VAULTPAY_DATA_DIR: dataDir, GATEWAY_PORT: String(gatewayPort), LOG_LEVEL: "warn" };
  for (const name of ["DATABASE_URL", "NATS_URL", "REDIS_URL", "NODE_ENV"]) delete env[name];
  const child = spawn(process.execPath, ["scripts/stack.ts"], {
    cwd: REPO_ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  for (const stream of [child.stdout!, child.stderr!]) readline.createInterface({ input: stream }).on("line", (line) => lines.push(line));
  const deadline = Date.now() + 120_000;
  for (;;) {
    const ready = lines.find((line) => line.includes("Apollo Sandbox:"));
    if (ready) {
      const gatewayUrl = /(http:\/\/\S+\/graphql)/.exec(ready)![1]!;
      const postgresHost = /postgres \(embedded\) (\S+)/.exec(lines.join("\n"))![1]!;
      return { child, lines, gatewayUrl, postgresHost, exited };
    }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`stack did not come up:\n${lines.join("\n")}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function query(url: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: each test reads the fields of the answer it expects.
  return { status: response.status, headers: response.headers, body: (await response.json()) as Record<string, any> };
}

const STATUS_QUERY = `query Status {
  authStatus { service databaseReachable natsConnected }
  accountsStatus { service databaseReachable natsConnected }
  transactionsStatus { service databaseReachable natsConnected }
  fraudStatus { service databaseReachable natsConnected }
  auditStatus { service databaseReachable natsConnected }
}`;

describe("pnpm start", () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "vaultpay-stack-"));
  let running: RunningStack | undefined;

  afterAll(async () => {
    if (running && running.child.exitCode === null) {
      running.child.kill("SIGINT");
      await running.exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("comes up, answers through the gateway, stops on Ctrl-C and keeps its data", async () => {
    const gatewayPort = await freePortRun(6);
    running = await startStack(dataDir, gatewayPort);
    expect(running.gatewayUrl).toBe(`http://127.0.0.1:${gatewayPort}/graphql`);

    const answer = await query(
      running.gatewayUrl,
      { query: STATUS_QUERY, operationName: "Status" },
      { "x-correlation-id": "corr-stack-1" },
    );
    expect(answer.status).toBe(200);
    expect(answer.headers.get("x-correlation-id")).toBe("corr-stack-1");
    expect(answer.body.errors).toBeUndefined();
    for (const service of ["auth", "accounts", "transactions", "fraud", "audit"]) {
      expect(answer.body.data[`${service}Status`]).toEqual({ service, databaseReachable: true, natsConnected: true });
    }

    // The Sandbox landing page is served outside production.
    const landing = await fetch(running.gatewayUrl, { headers: { accept: "text/html" } });
    expect(landing.status).toBe(200);
    expect(await landing.text()).toMatch(/sandbox/i);

    // The web app, built by the start when stale, at / on the same origin, its URL printed.
    const appUrl = `http://127.0.0.1:${gatewayPort}/`;
    expect(running.lines).toContain(`[stack] web app: ${appUrl}`);
    const app = await fetch(appUrl);
    expect(app.status).toBe(200);
    expect(app.headers.get("content-security-policy")).toContain("connect-src 'self'");
    expect(await app.text()).toContain('<div id="root">');

    const sql = new pg.Client({
      connectionString: withDatabase(`postgres://postgres:postgres@${running.postgresHost}/postgres`, "vaultpay_audit"),
    });
    await sql.connect();
    await sql.query(`CREATE TABLE stack_marker (note text); INSERT INTO stack_marker VALUES ('kept')`);
    await sql.end();

    running.child.kill("SIGINT");
    expect(await running.exited).toBe(0);
    expect(running.lines.some((line) => line.includes("[stack] stopped"))).toBe(true);
    await expect(fetch(running.gatewayUrl)).rejects.toThrow();

    running = await startStack(dataDir, gatewayPort);
    const again = await query(running.gatewayUrl, { query: "{ auditStatus { databaseReachable } }" });
    expect(again.body.data).toEqual({ auditStatus: { databaseReachable: true } });
    const sqlAgain = new pg.Client({
      connectionString: withDatabase(`postgres://postgres:postgres@${running.postgresHost}/postgres`, "vaultpay_audit"),
    });
    await sqlAgain.connect();
    expect((await sqlAgain.query(`SELECT note FROM stack_marker`)).rows).toEqual([{ note: "kept" }]);
    await sqlAgain.end();
  });
});

describe("NODE_ENV=production pnpm start", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "vaultpay-prod-stack-"));
  const infra: {
    nats?: Awaited<ReturnType<typeof startTestNats>>;
    redis?: Awaited<ReturnType<typeof startTestRedis>>;
    smtp?: TestSmtpServer;
  } = {};
  let child: ChildProcess | undefined;

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill("SIGINT");
      await new Promise((resolve) => child!.once("exit", resolve));
    }
    await Promise.all([infra.nats?.stop(), infra.redis?.stop(), infra.smtp?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  /** The operator's environment: URLs given, every key as a NAME_FILE secret, the SMTP relay. */
  async function productionEnv(gatewayPort: number): Promise<NodeJS.ProcessEnv> {
    infra.nats ??= await startTestNats();
    infra.redis ??= await startTestRedis();
    infra.smtp ??= await startTestSmtpServer();
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const name of ["DATABASE_URL", "NATS_URL", "REDIS_URL", "NODE_ENV"]) delete env[name];
    const files = Object.fromEntries(
      Object.entries({
        ...generateDevSecrets(),
        ADMIN_PASSWORD: "a real Passphrase 7",
        SMTP_PASSWORD: infra.smtp.password,
        // The test NATS's users: each process is started as its own.
        NATS_PASSWORDS: JSON.stringify(
          Object.fromEntries(NATS_SERVICE_USERS.map((user) => [user, natsServers(infra.nats!.urlFor(user)).pass])),
        ),
      }).map(([name, value]) => {
        const file = path.join(dir, name.toLowerCase());
        writeFileSync(file, `${value}\n`, { mode: 0o600 });
        return [`${name}_FILE`, file];
      }),
    );
    const { SMTP_PASSWORD: _password, ...smtpSettings } = infra.smtp.env();
    return {
      ...env,
      ...files,
      ...smtpSettings,
      NODE_ENV: "production",
      LOG_LEVEL: "warn",
      VAULTPAY_DATA_DIR: path.join(dir, "data"),
      GATEWAY_PORT: String(gatewayPort),
      DATABASE_URL: testServerUrl(),
      NATS_URL: natsServers(infra.nats.url).servers.join(","),
      REDIS_URL: infra.redis.url,
      ADMIN_EMAIL: "ops@bank.example",
    };
  }

  it("refuses to start without a key, naming it on one line", async () => {
    const env = await productionEnv(await freePort());
    delete env.OTP_PEPPER_FILE;
    const refused = spawnSync(process.execPath, ["scripts/stack.ts"], {
      cwd: REPO_ROOT,
      env,
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(refused.status).toBe(78);
    const lines = refused.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^invalid configuration: OTP_PEPPER: is required in production/);
  });

  it("comes up with given URLs and NAME_FILE keys, and a customer signs in through the SMTP relay", async () => {
    const gatewayPort = await freePortRun(6);
    child = spawn(process.execPath, ["scripts/stack.ts"], {
      cwd: REPO_ROOT,
      env: await productionEnv(gatewayPort),
      stdio: ["ignore", "pipe", "pipe"],
    });
    const lines: string[] = [];
    for (const stream of [child.stdout!, child.stderr!]) readline.createInterface({ input: stream }).on("line", (line) => lines.push(line));
    const gatewayUrl = `http://127.0.0.1:${gatewayPort}/graphql`;
    await waitUntil(
      async () => lines.some((line) => line.includes(`[stack] gateway: ${gatewayUrl}`)) || child!.exitCode !== null,
      "the production stack",
      150_000,
      200,
    );
    expect(child.exitCode, lines.join("\n")).toBeNull();
    expect(lines.join("\n")).toContain("postgres (given)");

    const post = async (query: string, variables: Record<string, unknown>) =>
      (await (
        await fetch(gatewayUrl, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ query, variables }),
        })
      ).json()) as {
        data?: Record<string, Record<string, string>>;
        errors?: unknown[];
      };
    const email = "meera@example.com";
    const asked = await post(
      `mutation($e: String!) { register(email: $e, phone: "+919800000002", password: "violet canyon 31 drum", deviceId: "d1") { challengeId } }`,
      { e: email },
    );
    expect(asked.errors).toBeUndefined();
    const mail = await waitUntil(async () => infra.smtp!.received.find((message) => message.to.includes(email)), "the OTP mail");
    const code = /code is ([0-9]{6})/.exec(mail.text)![1]!;
    const verified = await post(
      `mutation($id: ID!, $c: String!) { verifyOtp(challengeId: $id, code: $c, deviceId: "d1") { accessToken } }`,
      {
        id: asked.data!.register!.challengeId,
        c: code,
      },
    );
    expect(verified.errors).toBeUndefined();
    expect(verified.data!.verifyOtp!.accessToken).toMatch(/^ey/);

    child.kill("SIGINT");
    expect(await new Promise((resolve) => child!.once("exit", (status) => resolve(status)))).toBe(0);
  });
});
