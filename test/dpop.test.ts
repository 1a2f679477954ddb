/**
 * Device binding (DPoP, RFC 9449) through the gateway with the whole stack, and the account
 * takeover it answers: a stolen DPoP-bound token is refused at the door without the device's key;
 * a stolen plain bearer token with a forged x-device-id counts as an unproven device, and with a
 * new payee and a large amount the transfer fails and is refunded at once — while a Sandbox-style
 * bearer session still moves a small sum.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "graphql-ws";
import { createDpopDevice, provenDeviceId, type DpopDevice } from "@vaultpay/kit";
import { startTestStack, waitUntil, type TestStack } from "@vaultpay/testing";

const PASSWORD = "dpop journey 77";
const ADMIN = { email: "admin@vaultpay.local", password: "VaultPay-dev-admin-1" };
interface Result<T> {
  data?: T;
  errors?: Array<{ message: string; extensions?: Record<string, unknown> }>;
}
interface Session {
  accessToken: string;
  refreshToken: string;
  user: { id: string };
}
const SESSION_FIELDS = "accessToken refreshToken user { id }";

describe("DPoP device binding end to end", () => {
  let stack: TestStack & { teardown: () => Promise<void> };
  let counter = 0;

  beforeAll(async () => {
    stack = await startTestStack({
      env: {
        RATE_LIMIT_CREDENTIAL_ATTEMPTS: "1000",
      },
    });
  });
  afterAll(async () => {
    await stack?.teardown();
  });

  /** One request; with a device, a fresh proof for it (bound to the token when there is one). */
  async function call<T>(
    query: string,
    variables: Record<string, unknown>,
    as: { token?: string; device?: DpopDevice; proof?: string; headers?: Record<string, string> } = {},
  ): Promise<Result<T>> {
    const headers: Record<string, string> = { "x-device-id": "claimed-laptop", ...as.headers };
    if (as.token) headers.authorization = `${as.device ? "DPoP" : "Bearer"} ${as.token}`;
    const proof =
      as.proof ?? (as.device ? await as.device.proof({ htm: "POST", htu: stack.gatewayUrl, accessToken: as.token }) : undefined);
    if (proof) headers.dpop = proof;
    return stack.graphql<T>(query, variables, headers);
  }

  async function signIn(email: string, password: string, device?: DpopDevice, register = true): Promise<Session> {
    const start = register
      ? await call<{ register: { challengeId: string } }>(
          `mutation($e: String!, $p: String!) { register(email: $e, phone: "+919811112222", password: $p, deviceId: "claimed-laptop") { challengeId } }`,
          { e: email, p: password },
          { device },
        )
      : await call<{ login: { challengeId: string } }>(
          `mutation($e: String!, $p: String!) { login(email: $e, password: $p, deviceId: "claimed-laptop") { challengeId } }`,
          { e: email, p: password },
          { device },
        );
    expect(start.errors).toBeUndefined();
    const challengeId =
      (start.data as { register?: { challengeId: string }; login?: { challengeId: string } }).register?.challengeId ??
      (start.data as { login: { challengeId: string } }).login.challengeId;
    const mailbox = await call<{ devMailbox: Array<{ code: string }> }>(`query($to: String!) { devMailbox(to: $to) { code } }`, {
      to: email,
    });
    const verified = await call<{ verifyOtp: Session }>(
      `mutation($c: ID!, $code: String!) { verifyOtp(challengeId: $c, code: $code, deviceId: "claimed-laptop") { ${SESSION_FIELDS} } }`,
      { c: challengeId, code: mailbox.data!.devMailbox[0]!.code },
      { device },
    );
    expect(verified.errors).toBeUndefined();
    return verified.data!.verifyOtp;
  }

  const email = () => `dpop${++counter}-${Date.now()}@example.com`;
  const ME = `query { me { id devices { fingerprint label } } }`;
  const reasonOf = (result: Result<unknown>) => ({
    code: result.errors?.[0]?.extensions?.code,
    reason: result.errors?.[0]?.extensions?.reason,
  });

  it("binds a DPoP client's tokens to its key: a stolen token without the key is refused at the door", async () => {
    const phone = await createDpopDevice();
    const thief = await createDpopDevice();
    const session = await signIn(email(), PASSWORD, phone);

    const me = await call<{ me: { devices: Array<{ fingerprint: string; label: string }> } }>(
      ME,
      {},
      { token: session.accessToken, device: phone },
    );
    expect(me.errors).toBeUndefined();
    expect(me.data!.me.devices).toEqual([{ fingerprint: provenDeviceId(phone.jkt), label: "claimed-laptop" }]);

    // The stolen token alone (Bearer, the victim's device id in the header): refused.
    const stolen = await call(ME, {}, { token: session.accessToken, headers: { "x-device-id": provenDeviceId(phone.jkt) } });
    expect(reasonOf(stolen)).toEqual({ code: "UNAUTHENTICATED", reason: "DPOP_PROOF_REQUIRED" });
    // With a proof from the thief's own key: refused.
    expect(reasonOf(await call(ME, {}, { token: session.accessToken, device: thief }))).toEqual({
      code: "UNAUTHENTICATED",
      reason: "DPOP_PROOF_REQUIRED",
    });
    // A proof is good once: replayed (same jti), refused.
    const proof = await phone.proof({ htm: "POST", htu: stack.gatewayUrl, accessToken: session.accessToken });
    expect((await call(ME, {}, { token: session.accessToken, device: phone, proof })).errors).toBeUndefined();
    expect(reasonOf(await call(ME, {}, { token: session.accessToken, device: phone, proof }))).toEqual({
      code: "UNAUTHENTICATED",
      reason: "DPOP_PROOF_INVALID",
    });
    // A proof for another URL, or for no token (no ath), is refused too.
    const elsewhere = await phone.proof({ htm: "POST", htu: "https://elsewhere.example/graphql", accessToken: session.accessToken });
    expect(reasonOf(await call(ME, {}, { token: session.accessToken, device: phone, proof: elsewhere })).reason).toBe("DPOP_PROOF_INVALID");
    const unbound = await phone.proof({ htm: "POST", htu: stack.gatewayUrl });
    expect(reasonOf(await call(ME, {}, { token: session.accessToken, device: phone, proof: unbound })).reason).toBe("DPOP_PROOF_INVALID");

    // Refreshing a bound session needs a proof of its key; the new access token is bound again.
    const REFRESH = `mutation($r: String!) { refreshSession(refreshToken: $r, deviceId: "claimed-laptop") { ${SESSION_FIELDS} } }`;
    expect(reasonOf(await call(REFRESH, { r: session.refreshToken }))).toEqual({ code: "UNAUTHENTICATED", reason: "DPOP_PROOF_REQUIRED" });
    expect(reasonOf(await call(REFRESH, { r: session.refreshToken }, { device: thief })).code).toBe("UNAUTHENTICATED");
    const refreshed = await call<{ refreshSession: Session }>(REFRESH, { r: session.refreshToken }, { device: phone });
    expect(refreshed.errors).toBeUndefined();
    const next = refreshed.data!.refreshSession;
    expect(reasonOf(await call(ME, {}, { token: next.accessToken })).reason).toBe("DPOP_PROOF_REQUIRED");
    expect((await call(ME, {}, { token: next.accessToken, device: phone })).errors).toBeUndefined();

    // graphql-ws: the proof rides in connectionParams, made for GET on the http URL of /graphql.
    const connect = (params: Record<string, unknown>) =>
      new Promise<"connected" | number>((resolve) => {
        const client = createClient({
          url: stack.gatewayUrl.replace(/^http/, "ws"),
          connectionParams: params,
          lazy: false,
          retryAttempts: 0,
          on: {
            connected: () => {
              resolve("connected");
              void client.dispose();
            },
            closed: (event) => resolve((event as { code: number }).code),
          },
        });
      });
    expect(await connect({ authorization: `DPoP ${next.accessToken}` })).toBe(4403);
    const wsProof = await phone.proof({ htm: "GET", htu: stack.gatewayUrl, accessToken: next.accessToken });
    expect(await connect({ authorization: `DPoP ${next.accessToken}`, dpop: wsProof })).toBe("connected");
    expect(await connect({ authorization: `DPoP ${next.accessToken}`, dpop: wsProof })).toBe(4403);
  });

  it("pushes a bound session's transfer over a graphql-ws connection opened with a proof, proven all the way to fraud", async () => {
    const phone = await createDpopDevice();
    const sender = await signIn(email(), PASSWORD, phone);
    const payee = await signIn(email(), PASSWORD);
    const admin = await signIn(ADMIN.email, ADMIN.password, undefined, false);
    const from = (
      await call<{ openAccount: { id: string } }>(
        `mutation { openAccount(type: SAVINGS) { id } }`,
        {},
        { token: sender.accessToken, device: phone },
      )
    ).data!.openAccount;
    const to = (
      await call<{ openAccount: { number: string } }>(
        `mutation { openAccount(type: SAVINGS) { number } }`,
        {},
        { token: payee.accessToken },
      )
    ).data!.openAccount;
    expect(
      (
        await call(
          `mutation($id: ID!) { depositFunds(accountId: $id, amountMinor: "100000", idempotencyKey: "dpop-ws-deposit") { id } }`,
          { id: from.id },
          { token: admin.accessToken },
        )
      ).errors,
    ).toBeUndefined();
    const started = await waitUntil(async () => {
      const result = await call<{ initiateTransfer: { id: string } }>(
        `mutation($from: ID!, $to: String!) { initiateTransfer(fromAccountId: $from, toAccountNumber: $to, amountMinor: "2500", idempotencyKey: "dpop-ws") { id } }`,
        { from: from.id, to: to.number },
        { token: sender.accessToken, device: phone },
      );
      return result.data?.initiateTransfer;
    }, "the transfer to be accepted");
    const client = createClient({
      url: stack.gatewayUrl.replace(/^http/, "ws"),
      connectionParams: async () => ({
        authorization: `DPoP ${sender.accessToken}`,
        dpop: await phone.proof({ htm: "GET", htu: stack.gatewayUrl, accessToken: sender.accessToken }),
      }),
      retryAttempts: 0,
    });
    try {
      const statuses: Array<{ status: string; fraudCheck: { riskScore: number; reasons: string[] } | null }> = [];
      await new Promise<void>((resolve, reject) => {
        client.subscribe<{ transferStatusChanged: (typeof statuses)[number] }>(
          {
            query: `subscription($id: ID!) { transferStatusChanged(id: $id) { status fraudCheck { riskScore reasons } } }`,
            variables: { id: started.id },
          },
          {
            next: (message) => {
              if (message.errors) reject(new Error(JSON.stringify(message.errors)));
              const change = message.data!.transferStatusChanged;
              statuses.push(change);
              if (["COMPLETED", "FAILED", "REJECTED"].includes(change.status)) resolve();
            },
            error: reject,
            complete: resolve,
          },
        );
      });
      expect(statuses.map((change) => change.status)).toEqual(["PENDING", "DEBITED", "COMPLETED"]);
      // The device was proven with the request: only the new payee counts, no device rule.
      expect(statuses.at(-1)!.fraudCheck).toEqual({ riskScore: 15, reasons: ["This is the first transfer to this payee"] });
    } finally {
      await client.dispose();
    }
  });

  it("scores a stolen bearer token with a forged x-device-id as unproven: a small Sandbox transfer passes, a takeover fails and is refunded", async () => {
    const admin = await signIn(ADMIN.email, ADMIN.password, undefined, false);
    // The victim uses a client that cannot sign proofs (Apollo Sandbox): a plain bearer session.
    const victim = await signIn(email(), PASSWORD);
    const [payee, thief] = [await signIn(email(), PASSWORD), await signIn(email(), PASSWORD)];
    const open = async (token: string) =>
      (await call<{ openAccount: { id: string; number: string } }>(`mutation { openAccount(type: SAVINGS) { id number } }`, {}, { token }))
        .data!.openAccount;
    const [from, to, mule] = [await open(victim.accessToken), await open(payee.accessToken), await open(thief.accessToken)];
    const deposit = await call(
      `mutation($id: ID!) { depositFunds(accountId: $id, amountMinor: "20000000", idempotencyKey: "dpop-deposit") { id } }`,
      { id: from.id },
      { token: admin.accessToken },
    );
    expect(deposit.errors).toBeUndefined();

    const send = async (token: string, toNumber: string, amountMinor: string, key: string, headers: Record<string, string>) => {
      const started = await call<{ initiateTransfer: { id: string } }>(
        `mutation($from: ID!, $to: String!, $amount: MinorUnits!, $key: String!) { initiateTransfer(fromAccountId: $from, toAccountNumber: $to, amountMinor: $amount, idempotencyKey: $key) { id } }`,
        { from: from.id, to: toNumber, amount: amountMinor, key },
        { token, headers },
      );
      expect(started.errors).toBeUndefined();
      return waitUntil(async () => {
        const result = await call<{
          transfer: { status: string; failureReason: string | null; fraudCheck: { riskScore: number; reasons: string[] } | null };
        }>(
          `query($id: ID!) { transfer(id: $id) { status failureReason fraudCheck { riskScore reasons } } }`,
          { id: started.data!.initiateTransfer.id },
          { token },
        );
        const transfer = result.data?.transfer;
        return transfer && ["COMPLETED", "FAILED", "REJECTED"].includes(transfer.status) && transfer;
      }, "the transfer to end");
    };

    // The customer exploring in Sandbox: a small transfer to a new payee completes (25 + 15).
    const small = await send(victim.accessToken, to.number, "25000", "sandbox-small", { "x-device-id": "claimed-laptop" });
    expect(small).toMatchObject({ status: "COMPLETED", fraudCheck: { riskScore: 40 } });

    // The thief replays the stolen token with the victim's own device id in the header: before
    // DPoP, risk 0 and COMPLETED. Now: unproven (25) + new payee (15) + high amount (50) +
    // velocity by amount (35), the longest verdict; refunded on the verdict itself, not after a
    // step timeout.
    const takeover = await send(victim.accessToken, mule.number, "10000001", "takeover", { "x-device-id": "claimed-laptop" });
    expect(takeover.status).toBe("FAILED");
    expect(takeover.fraudCheck!.riskScore).toBe(100);
    expect(takeover.fraudCheck!.reasons).toEqual([
      "The amount is higher than we send without a further check",
      "Too many transfers, or too much money, in a short time",
      "The transfer was sent without proof of a registered device",
      "This is the first transfer to this payee",
    ]);
    expect(takeover.failureReason).toBe(`The fraud check stopped this transfer: ${takeover.fraudCheck!.reasons.join("; ")}`);
    const balance = async () =>
      (
        await call<{ account: { balance: { minor: string } } }>(
          `query($id: ID!) { account(id: $id) { balance { minor } } }`,
          { id: from.id },
          { token: victim.accessToken },
        )
      ).data!.account.balance.minor;
    expect(await balance()).toBe("19975000");
  });
});
