/**
 * Is the gateway the door that limits? The same authenticated query (`myAccounts`) through the
 * gateway and sent straight to the accounts subgraph with a valid gateway assertion, in one run,
 * plus the same query by a device-bound session (a DPoP proof with every request, as the web app
 * sends it) and an anonymous `{ __typename }` through the gateway. Results appended to
 * bench/gateway-results.md. Not part of `pnpm test`:
 *   [GATEWAY_BENCH_SECONDS=10] [GATEWAY_BENCH_CLIENTS=16] [GATEWAY_BENCH_WARM_UP_SECONDS=3] [BENCH_PROFILE_DIR=dir] pnpm bench gateway
 */
import { execFileSync } from "node:child_process";
import { appendFileSync } from "node:fs";
import os from "node:os";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DPOP_HEADER, GATEWAY_ASSERTION_HEADER, createDpopDevice, signGatewayAssertion } from "@vaultpay/kit";
import { mintAccessToken, postJson, startTestStack, type TestStack } from "@vaultpay/testing";
import { cpuPerUnit, kernelPerUnit, ownCpuPerUnit, processCpuSeconds } from "./tools/process-cpu.ts";

const SECONDS = Number(process.env.GATEWAY_BENCH_SECONDS ?? 10);
const CLIENTS = Number(process.env.GATEWAY_BENCH_CLIENTS ?? 16);
const QUERY = `{ myAccounts { id balance { minor } } }`;

/**
 * Unmeasured seconds of each kind of request before any is measured. Without them the first phase
 * (through the gateway) paid the processes' warm-up (JIT compilation, caches filling): the
 * gateway's CPU per request there was 1.19–1.39 ms, against 0.84–0.89 after 3 s of each kind, and
 * a proof's check looked free beside it (bench/gateway-results.md, 2026-12-05).
 */
const WARM_UP_SECONDS = Number(process.env.GATEWAY_BENCH_WARM_UP_SECONDS ?? 3);

/** A GraphQL answer as the clients read it. */
type Answer = { status: number; body: { data?: unknown; errors?: unknown } };

/** Requests answered by CLIENTS closed-loop clients in `seconds`; every answer must be data. */
async function drive(send: () => Promise<Answer>, seconds: number): Promise<number> {
  let done = 0;
  const deadline = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (Date.now() < deadline) {
        const { status, body } = await send();
        expect(body.errors).toBeUndefined();
        expect(status).toBe(200);
        done++;
      }
    }),
  );
  return done;
}

/** Requests per second from CLIENTS closed-loop clients for SECONDS, and where their CPU went. */
async function requestsPerSecond(send: () => Promise<Answer>, label: string, databases: string[]): Promise<number> {
  const cpuBefore = processCpuSeconds(databases);
  const clientCpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  const done = await drive(send, SECONDS);
  const perSecond = done / ((performance.now() - startedAt) / 1000);
  // Where a request's CPU goes, process by process; the benchmark's own client shares the cores
  // and is printed apart (it is in both throughputs, not in the stack's numbers).
  const clientMsPerRequest = ownCpuPerUnit(clientCpuBefore, done);
  const cpuAfter = processCpuSeconds(databases);
  console.info(`${label}: CPU ms per request (/proc): ${cpuPerUnit(cpuBefore, cpuAfter, done)}`);
  console.info(`${label}: of which in the kernel: ${kernelPerUnit(cpuBefore, cpuAfter, done)}`);
  console.info(`${label}: CPU ms per request of the benchmark's own client: ${clientMsPerRequest.toFixed(2)}`);
  return perSecond;
}

describe("gateway benchmark", () => {
  let stack: TestStack & { teardown: () => Promise<void> };

  beforeAll(async () => {
    const profileDir = process.env.BENCH_PROFILE_DIR;
    stack = await startTestStack({
      env: {
        RATE_LIMIT_OPERATIONS: "10000000",
        RATE_LIMIT_REQUESTS_PER_IP: "10000000",
        ...(profileDir ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profileDir}` } : {}),
      },
    });
  });
  afterAll(async () => {
    await stack?.teardown();
  });

  it("compares a query through the gateway with the same query sent straight to its subgraph", async () => {
    const owner = randomUUID();
    const token = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: owner, role: "CUSTOMER", expiresInSeconds: 3600 });
    const opened = await stack.graphql(`mutation { openAccount(type: SAVINGS) { id } }`, {}, { authorization: `Bearer ${token}` });
    expect(opened.errors).toBeUndefined();
    const post = (url: string, query: string, headers: Record<string, string>) =>
      postJson<Answer["body"]>(url, JSON.stringify({ query }), headers);
    // The assertion covers the exact body, as the gateway's own fetcher signs it.
    const directBody = JSON.stringify({ query: QUERY });

    const databases = Object.values(stack.databaseUrls).map((url) => new URL(url).pathname.slice(1));
    const throughGateway = () => post(stack.gatewayUrl, QUERY, { authorization: `Bearer ${token}` });
    const straight = () => {
      const correlationId = randomUUID();
      return postJson<Answer["body"]>(stack.urls.accounts, directBody, {
        authorization: `Bearer ${token}`,
        "x-correlation-id": correlationId,
        [GATEWAY_ASSERTION_HEADER]: signGatewayAssertion(stack.secrets.GATEWAY_SECRET, { correlationId, body: directBody }),
      });
    };
    // The app's path: a token bound to the device's key, and a fresh proof of it with each request
    // (signed here, in the benchmark's process: its CPU is not counted below, its time is).
    const device = await createDpopDevice();
    const boundToken = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, {
      userId: owner,
      role: "CUSTOMER",
      expiresInSeconds: 3600,
      boundDeviceKey: device.jkt,
    });
    const withProof = async () =>
      post(stack.gatewayUrl, QUERY, {
        authorization: `DPoP ${boundToken}`,
        [DPOP_HEADER]: await device.proof({ htm: "POST", htu: stack.gatewayUrl, accessToken: boundToken }),
      });
    const anonymous = () => post(stack.gatewayUrl, `{ __typename }`, {});

    for (const send of [throughGateway, straight, withProof, anonymous]) await drive(send, WARM_UP_SECONDS);
    const viaGateway = await requestsPerSecond(throughGateway, "through the gateway", databases);
    const direct = await requestsPerSecond(straight, "straight to accounts", databases);
    const withDpop = await requestsPerSecond(withProof, "through the gateway with DPoP", databases);
    const typename = await requestsPerSecond(anonymous, "{ __typename }", databases);

    const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
    const line = [
      `| ${new Date().toISOString().slice(0, 16)}Z | ${commit} | ${os.cpus().length} × ${os.cpus()[0]?.model.trim()} | ${CLIENTS} | ${SECONDS}`,
      viaGateway.toFixed(0),
      direct.toFixed(0),
      `${(viaGateway / direct).toFixed(2)}`,
      typename.toFixed(0),
      `${withDpop.toFixed(0)} |`,
    ].join(" | ");
    appendFileSync(new URL("./gateway-results.md", import.meta.url), `${line}\n`);
    console.info(line);
  }, 600_000);
});
