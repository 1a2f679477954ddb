/**
 * `pnpm start` as a person runs it: embedded PostgreSQL, nats-server and redis-server started by the
 * stack itself (no URLs given), the five subgraphs and the gateway; a query answered through the
 * gateway and the web app at /; Ctrl-C stops everything; a second start keeps the data.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import pg from "pg";
import { REPO_ROOT, isPortFree, withDatabase } from "@vaultpay/stack";

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
  const child = spawn(process.execPath, ["--import", "tsx", "scripts/stack.ts"], { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
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

/**
 * A gateway port whose five following ports (the subgraphs', as `pnpm start` places them) are free
 * too, below Linux's ephemeral range: with a port from freePort(), in that range, other processes'
 * outgoing connections took one of the next five on a busy machine (seen twice).
 */
async function freePortRun(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    const ports = Array.from({ length: 6 }, (_, index) => port + index);
    if ((await Promise.all(ports.map(isPortFree))).every(Boolean)) return port;
  }
  throw new Error("no run of six free ports between 20000 and 30000");
}

async function query(url: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
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
    const gatewayPort = await freePortRun();
    running = await startStack(dataDir, gatewayPort);
    expect(running.gatewayUrl).toBe(`http://127.0.0.1:${gatewayPort}/graphql`);

    const answer = await query(running.gatewayUrl, { query: STATUS_QUERY, operationName: "Status" }, { "x-correlation-id": "corr-stack-1" });
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

    const sql = new pg.Client({ connectionString: withDatabase(`postgres://postgres:postgres@${running.postgresHost}/postgres`, "vaultpay_audit") });
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
    const sqlAgain = new pg.Client({ connectionString: withDatabase(`postgres://postgres:postgres@${running.postgresHost}/postgres`, "vaultpay_audit") });
    await sqlAgain.connect();
    expect((await sqlAgain.query(`SELECT note FROM stack_marker`)).rows).toEqual([{ note: "kept" }]);
    await sqlAgain.end();
  });
});
