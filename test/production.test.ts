/**
 * The platform in production mode: no dev mailbox, no Sandbox, no introspection or suggestions;
 * codes reach customers only through the real SMTP server of this test (STARTTLS, a login), and a
 * whole sign-in works through it.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestSmtpServer, startTestStack, waitUntil, type TestSmtpServer, type TestStack } from "@vaultpay/testing";

type Stack = TestStack & { teardown: () => Promise<void> };

const ADMIN_EMAIL = "ops@bank.example";
const ADMIN_PASSWORD = "a real Passphrase 7";

function codes(result: { errors?: Array<{ extensions?: Record<string, unknown> }> }) {
  return (result.errors ?? []).map((error) => error.extensions?.code);
}

describe("production mode", () => {
  let smtp: TestSmtpServer;
  let stack: Stack;

  beforeAll(async () => {
    smtp = await startTestSmtpServer();
    stack = await startTestStack({ nodeEnv: "production", env: { ...smtp.env(), ADMIN_EMAIL, ADMIN_PASSWORD } });
  });
  afterAll(async () => {
    await stack?.teardown();
    await smtp?.stop();
  });

  /** The code in the newest mail to this address, once it has arrived. */
  async function codeFor(email: string, after: number): Promise<string> {
    const mail = await waitUntil(async () => smtp.received.slice(after).find((message) => message.to.includes(email)), `the code mailed to ${email}`);
    expect(mail).toMatchObject({ from: "no-reply@vaultpay.test", secure: true, user: smtp.user, subject: "Your VaultPay sign-in code" });
    return /code is ([0-9]{6})/.exec(mail.text)![1]!;
  }

  async function signIn(email: string, password: string, register: boolean, deviceId: string): Promise<string> {
    const before = smtp.received.length;
    const asked = register
      ? await stack.graphql<{ register: { challengeId: string } }>(
          `mutation($email: String!, $password: String!, $device: String!) { register(email: $email, phone: "+919800000001", password: $password, deviceId: $device) { challengeId } }`,
          { email, password, device: deviceId },
        )
      : await stack.graphql<{ login: { challengeId: string } }>(
          `mutation($email: String!, $password: String!, $device: String!) { login(email: $email, password: $password, deviceId: $device) { challengeId } }`,
          { email, password, device: deviceId },
        );
    expect(asked.errors).toBeUndefined();
    const challengeId = ((asked.data as Record<string, { challengeId: string }>)[register ? "register" : "login"]!).challengeId;
    const verified = await stack.graphql<{ verifyOtp: { accessToken: string; user: { email: string } } }>(
      `mutation($id: ID!, $code: String!, $device: String!) { verifyOtp(challengeId: $id, code: $code, deviceId: $device) { accessToken user { email } } }`,
      { id: challengeId, code: await codeFor(email, before), device: deviceId },
    );
    expect(verified.errors).toBeUndefined();
    expect(verified.data!.verifyOtp.user.email).toBe(email);
    return verified.data!.verifyOtp.accessToken;
  }

  it("signs a new customer and the administrator in through the real SMTP server", async () => {
    const email = `asha-${randomUUID().slice(0, 8)}@example.com`;
    const token = await signIn(email, "correct horse 42 battery", true, "phone-1");
    const me = await stack.graphql<{ me: { email: string; role: string } }>(`{ me { email role } }`, {}, { authorization: `Bearer ${token}` });
    expect(me.data?.me).toEqual({ email, role: "CUSTOMER" });
    const admin = await signIn(ADMIN_EMAIL, ADMIN_PASSWORD, false, "ops-laptop");
    const users = await stack.graphql<{ users: Array<{ email: string }> }>(`{ users(first: 10) { email } }`, {}, { authorization: `Bearer ${admin}` });
    expect(users.data?.users.map((user) => user.email)).toContain(email);
  });

  it("has no dev mailbox, no introspection, no suggestions and no Sandbox", async () => {
    expect(codes(await stack.graphql(`{ devMailbox(to: "asha@example.com") { code } }`))).toEqual(["FORBIDDEN"]);
    const introspection = await stack.graphql(`{ __schema { types { name } } }`);
    expect(introspection.data).toBeUndefined();
    expect(codes(introspection)).toEqual(["GRAPHQL_VALIDATION_FAILED"]);
    const typo = await stack.graphql(`{ mee { email } }`);
    expect(typo.errors?.[0]?.message).not.toMatch(/Did you mean/);
    const landing = await fetch(stack.gatewayUrl, { headers: { accept: "text/html" } });
    expect(await landing.text()).not.toMatch(/sandbox|embeddable/i);
  });
});
