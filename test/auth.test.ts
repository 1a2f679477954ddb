/** Auth through the gateway with the whole stack: register → OTP → session → refresh → reuse → logout. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectJetStream, parseEvent, type Event } from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import { startTestStack, waitUntil, type TestStack } from "@vaultpay/testing";

const PASSWORD = "e2e Password 123";
const PHONE = "+919812345678";
const DEVICE = "e2e-device-1";
const DEV_ADMIN = { email: "admin@vaultpay.local", password: "VaultPay-dev-admin-1" };

const PAYLOAD_FIELDS = `accessToken refreshToken accessTokenExpiresAt user { id email role maskedPhone }`;

interface Payload {
  accessToken: string;
  refreshToken: string;
  accessTokenExpiresAt: string;
  user: { id: string; email: string; role: string; maskedPhone: string | null };
}

describe("auth end to end", () => {
  let stack: TestStack & { teardown: () => Promise<void> };
  const logLines: string[] = [];
  /** Everything secret the journey handled: none may appear in events or logs. */
  const secrets = new Set<string>([PASSWORD, PHONE, PHONE.slice(1), DEV_ADMIN.password]);

  beforeAll(async () => {
    stack = await startTestStack({
      logLevel: "debug",
      output: (line) => logLines.push(line),
      // A short grace window keeps the reuse step quick (the rule is the same as with the default 10 s);
      // the gateway's per-IP credential limit would otherwise stop this one client after 10 attempts.
      env: { REFRESH_REUSE_GRACE_SECONDS: "1", RATE_LIMIT_CREDENTIAL_ATTEMPTS: "1000" },
    });
  });
  afterAll(async () => {
    await stack?.teardown();
  });

  async function gql<T>(query: string, variables: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
    return stack.graphql<T>(query, variables, { "x-device-id": DEVICE, ...headers });
  }

  async function codeFor(email: string): Promise<string> {
    const mailbox = await gql<{ devMailbox: Array<{ to: string; channel: string; code: string | null; sentAt: string }> }>(
      `query Mailbox($to: String!) { devMailbox(to: $to) { to channel body code sentAt } }`,
      { to: email },
    );
    expect(mailbox.errors).toBeUndefined();
    const code = mailbox.data!.devMailbox[0]?.code;
    expect(code).toMatch(/^[0-9]{6}$/);
    secrets.add(code!);
    return code!;
  }

  async function verify(challengeId: string, code: string, deviceId = DEVICE): Promise<Payload> {
    const result = await gql<{ verifyOtp: Payload }>(
      `mutation Verify($challengeId: ID!, $code: String!, $deviceId: String!) { verifyOtp(challengeId: $challengeId, code: $code, deviceId: $deviceId) { ${PAYLOAD_FIELDS} } }`,
      { challengeId, code, deviceId },
    );
    expect(result.errors).toBeUndefined();
    const payload = result.data!.verifyOtp;
    secrets.add(payload.accessToken).add(payload.refreshToken);
    return payload;
  }

  async function login(email: string, password: string): Promise<Payload> {
    const result = await gql<{ login: { challengeId: string } }>(
      `mutation Login($email: String!, $password: String!, $deviceId: String!) { login(email: $email, password: $password, deviceId: $deviceId) { challengeId expiresAt channel } }`,
      { email, password, deviceId: DEVICE },
    );
    expect(result.errors).toBeUndefined();
    return verify(result.data!.login.challengeId, await codeFor(email));
  }

  const bearer = (payload: Payload) => ({ authorization: `Bearer ${payload.accessToken}` });

  async function refresh(refreshToken: string) {
    return gql<{ refreshSession: Payload }>(
      `mutation Refresh($refreshToken: String!, $deviceId: String!) { refreshSession(refreshToken: $refreshToken, deviceId: $deviceId) { ${PAYLOAD_FIELDS} } }`,
      { refreshToken, deviceId: DEVICE },
    );
  }

  const ME = `query Me { me { id email role maskedPhone devices { id fingerprint firstSeenAt lastSeenAt trusted } } }`;

  it("register → OTP from the dev mailbox → verifyOtp → me → refresh rotates → reuse revokes → logout", async () => {
    const email = `E2E.User+${Date.now()}@Example.com `;
    const normalized = email.trim().toLowerCase();
    secrets.add(normalized);

    const registered = await gql<{ register: { challengeId: string; expiresAt: string; channel: string } }>(
      `mutation Register($email: String!, $phone: String!, $password: String!, $deviceId: String!) {
         register(email: $email, phone: $phone, password: $password, deviceId: $deviceId) { challengeId expiresAt channel } }`,
      { email, phone: PHONE, password: PASSWORD, deviceId: DEVICE },
    );
    expect(registered.errors).toBeUndefined();
    expect(registered.data!.register.channel).toBe("email");
    expect(new Date(registered.data!.register.expiresAt).getTime()).toBeGreaterThan(Date.now() + 4 * 60_000);

    const session = await verify(registered.data!.register.challengeId, await codeFor(normalized));
    expect(session.user).toMatchObject({ email: normalized, role: "CUSTOMER", maskedPhone: "•••••••••5678" });

    const me = await gql<{ me: { id: string; email: string; devices: Array<{ fingerprint: string; trusted: boolean }> } }>(
      ME,
      {},
      bearer(session),
    );
    expect(me.errors).toBeUndefined();
    expect(me.data!.me).toMatchObject({ id: session.user.id, email: normalized, devices: [{ fingerprint: DEVICE, trusted: false }] });

    const rotated = await refresh(session.refreshToken);
    expect(rotated.errors).toBeUndefined();
    const second = rotated.data!.refreshSession;
    secrets.add(second.accessToken).add(second.refreshToken);
    expect(second.refreshToken).not.toBe(session.refreshToken);
    expect((await gql(ME, {}, bearer(second))).errors).toBeUndefined();

    // Past the grace window, the first refresh token again: someone holds a copy. The session ends.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const reuse = await refresh(session.refreshToken);
    expect(reuse.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
    const afterReuse = await refresh(second.refreshToken);
    expect(afterReuse.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
    const meAfterReuse = await gql(ME, {}, bearer(second));
    expect(meAfterReuse.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");

    // A new login on the same device: the device is now trusted; logout ends that session.
    const again = await login(normalized, PASSWORD);
    const meAgain = await gql<{ me: { devices: Array<{ fingerprint: string; trusted: boolean }> } }>(ME, {}, bearer(again));
    expect(meAgain.data!.me.devices).toEqual([expect.objectContaining({ fingerprint: DEVICE, trusted: true })]);
    const logout = await gql<{ logout: boolean }>(`mutation { logout }`, {}, bearer(again));
    expect(logout.data?.logout).toBe(true);
    expect((await gql(ME, {}, bearer(again))).errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
    expect((await refresh(again.refreshToken)).errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
  });

  it("answers a wrong password and an unknown email alike, and a taken email like a new one", async () => {
    const LOGIN = `mutation Login($email: String!, $password: String!, $deviceId: String!) { login(email: $email, password: $password, deviceId: $deviceId) { challengeId } }`;
    const wrong = await gql(LOGIN, { email: DEV_ADMIN.email, password: "not the password 1", deviceId: DEVICE });
    const unknown = await gql(LOGIN, { email: "nobody@example.com", password: "not the password 1", deviceId: DEVICE });
    expect(wrong.errors?.[0]).toEqual(unknown.errors?.[0]);
    expect(wrong.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");

    const REGISTER = `mutation R($email: String!, $deviceId: String!) { register(email: $email, phone: "+14155550123", password: "Some password 1", deviceId: $deviceId) { challengeId channel expiresAt } }`;
    const taken = await gql<{ register: Record<string, string> }>(REGISTER, { email: DEV_ADMIN.email, deviceId: DEVICE });
    const fresh = await gql<{ register: Record<string, string> }>(REGISTER, { email: `fresh${Date.now()}@example.com`, deviceId: DEVICE });
    expect(taken.errors).toBeUndefined();
    expect(Object.keys(taken.data!.register)).toEqual(Object.keys(fresh.data!.register));

    const invalid = await gql(REGISTER, { email: "not-an-email", deviceId: DEVICE });
    expect(invalid.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "email" });
  });

  it("keys the lockout to the address the gateway saw: a forged x-forwarded-for does not escape it", async () => {
    const email = `locked${Date.now()}@example.com`;
    const LOGIN = `mutation Login($email: String!) { login(email: $email, password: "wrong password 1", deviceId: "${DEVICE}") { challengeId } }`;
    const codes: unknown[] = [];
    for (let i = 1; i <= 5; i++)
      codes.push((await gql(LOGIN, { email }, { "x-forwarded-for": `203.0.113.${i}` })).errors?.[0]?.extensions?.code);
    expect(codes).toEqual(["UNAUTHENTICATED", "UNAUTHENTICATED", "UNAUTHENTICATED", "UNAUTHENTICATED", "RATE_LIMITED"]);
    expect((await gql(LOGIN, { email }, { "x-forwarded-for": "198.51.100.99" })).errors?.[0]?.extensions?.code).toBe("RATE_LIMITED");
  });

  it("serves users to the seeded ADMIN only", async () => {
    const USERS = `query Users { users(first: 10) { id email role } }`;
    expect((await gql(USERS)).errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
    const customerEmail = `customer${Date.now()}@example.com`;
    const registered = await gql<{ register: { challengeId: string } }>(
      `mutation { register(email: "${customerEmail}", phone: "+14155550124", password: "Customer pass 1", deviceId: "${DEVICE}") { challengeId } }`,
    );
    const customer = await verify(registered.data!.register.challengeId, await codeFor(customerEmail));
    expect((await gql(USERS, {}, bearer(customer))).errors?.[0]?.extensions?.code).toBe("FORBIDDEN");

    const admin = await login(DEV_ADMIN.email, DEV_ADMIN.password);
    expect(admin.user).toMatchObject({ role: "ADMIN", maskedPhone: null });
    const users = await gql<{ users: Array<{ email: string; role: string }> }>(USERS, {}, bearer(admin));
    expect(users.errors).toBeUndefined();
    expect(users.data!.users.map((u) => u.email)).toEqual(expect.arrayContaining([DEV_ADMIN.email, customerEmail]));
  });

  it("publishes auth events to the AUTH stream without secrets, and logs none", async () => {
    const link = await connectJetStream(stack.nats.url, "auth-e2e", createLogger({ service: "t", level: "silent" }));
    let events: Event[] = [];
    try {
      events = await waitUntil(async () => {
        const info = await link.jsm.streams.info("AUTH");
        const found: Event[] = [];
        for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
          found.push(parseEvent((await link.jsm.streams.getMessage("AUTH", { seq }))!.json()));
        }
        const types = new Set<string>(found.map((event) => event.type));
        const all = ["auth.user.created", "auth.login.succeeded", "auth.login.failed", "auth.device.registered", "auth.session.revoked"];
        return all.every((type) => types.has(type)) ? found : undefined;
      }, "every auth event type on the AUTH stream");
    } finally {
      await link.nc.close();
    }
    const revoked = events
      .filter((event) => event.type === "auth.session.revoked")
      .map((event) => (event.data as { reason: string }).reason);
    expect(revoked.sort()).toEqual(["logout", "refresh_token_reuse"]);
    const eventText = JSON.stringify(events);
    const logText = logLines.join("\n");
    expect(logLines.length).toBeGreaterThan(0);
    for (const secret of secrets) {
      // Whole-word matches: a 6-digit code must not "match" inside some unrelated id or number.
      const pattern = new RegExp(`(?<![0-9A-Za-z])${secret.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?![0-9A-Za-z])`);
      expect(pattern.test(eventText), `an event carries a secret (${secret.slice(0, 4)}…)`).toBe(false);
      expect(pattern.test(logText), `a log line carries a secret (${secret.slice(0, 4)}…)`).toBe(false);
    }
  });
});
