/** The auth domain on a real PostgreSQL and Redis, with an injectable clock. */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { createLocalJWKSet } from "jose";
import { generateKeyRingEnv, keyRingFrom } from "@vaultpay/crypto";
import {
  createDpopDevice,
  createLogger,
  createTokenVerifier,
  provenDeviceId,
  revokedSessionKey,
  type Caller,
  type DomainError,
} from "@vaultpay/kit";
import { generateDevSecrets } from "@vaultpay/stack";
import { createTestDatabase, startTestRedis, startTestSmtpServer } from "@vaultpay/testing";
import { AuthService, type AuthPayload, type Notifier } from "./service.ts";
import { createDb, type Db } from "./db.ts";
import { DEFAULT_LOCKOUT_POLICY, Lockout } from "./lockout.ts";
import { OtpChallenges } from "./otp.ts";
import { createArgon2Hasher, type PasswordHasher } from "./passwords.ts";
import { createDevMailbox, createRedisLockoutStore, createRedisOtpStore, createRedisSessionRevocations } from "./redis.ts";
import { createPrismaAuthStore } from "./store.ts";
import { createAccessTokenSigner, type AccessTokenSigner } from "./tokens.ts";
import { createSmtpNotifier } from "./notifiers.ts";

const PASSWORD = "correct horse 42";
const PHONE = "+919876543210";
const DEVICE = "device-one";

let database: { url: string; drop: () => Promise<void> };
let redisServer: Awaited<ReturnType<typeof startTestRedis>>;
let redis: Redis;
let db: Db;
let hasher: PasswordHasher;
let signer: AccessTokenSigner;
let nowMs = Date.now();
const now = () => new Date(nowMs);
const pepper = "p".repeat(40);
const keyRing = keyRingFrom(generateKeyRingEnv());
const mailbox = () => createDevMailbox(redis);
let auth: AuthService;
let counter = 0;

function buildAuth(lockoutPolicy = DEFAULT_LOCKOUT_POLICY, notifier: Notifier = mailbox()): AuthService {
  return new AuthService({
    store: createPrismaAuthStore(db),
    otp: new OtpChallenges({ store: createRedisOtpStore(redis), pepper, now }),
    lockout: new Lockout(createRedisLockoutStore(redis), pepper, now, lockoutPolicy),
    hasher,
    signer,
    revocations: createRedisSessionRevocations(redis),
    notifier,
    keyRing,
    logger: createLogger({ service: "auth-test", level: "silent" }),
    now,
  });
}

function freshEmail(): string {
  return `user${++counter}-${Date.now()}@example.com`;
}

async function lastCode(email: string): Promise<string> {
  const [message] = await mailbox().read(email);
  expect(message?.code).toMatch(/^[0-9]{6}$/);
  return message!.code!;
}

async function failure(promise: Promise<unknown>): Promise<DomainError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "expected a failure").toBeDefined();
  return error as DomainError;
}

async function signIn(email = freshEmail(), deviceId = DEVICE): Promise<{ email: string; payload: AuthPayload }> {
  const challenge = await auth.register({ email, phone: PHONE, password: PASSWORD, deviceId });
  const payload = await auth.verifyOtp({ challengeId: challenge.challengeId, code: await lastCode(email), deviceId });
  return { email, payload };
}

/**
 * Argon2 computations a task caused. Equal counts on two paths mean equal cost: argon2 dominates
 * both by far, and verifyNobody is a real verify of a real hash with the same parameters. (Counting
 * instead of timing keeps the test deterministic on busy shared cores.)
 */
const argon2 = { operations: 0 };
function counting(inner: PasswordHasher): PasswordHasher {
  return {
    hash: (password) => {
      argon2.operations++;
      return inner.hash(password);
    },
    verify: (passwordHash, password) => {
      argon2.operations++;
      return inner.verify(passwordHash, password);
    },
    verifyNobody: (password) => {
      argon2.operations++;
      return inner.verifyNobody(password);
    },
  };
}
async function argon2OperationsOf(task: () => Promise<unknown>): Promise<number> {
  const before = argon2.operations;
  await task();
  return argon2.operations - before;
}

const verifier = () => createTokenVerifier(createLocalJWKSet(signer.jwks()));

async function callerOf(payload: AuthPayload): Promise<Caller> {
  return (await verifier()(`Bearer ${payload.accessToken}`))!;
}

async function outbox(): Promise<Array<{ type: string; payload: { data: Record<string, unknown> } }>> {
  return db.$queryRawUnsafe(`SELECT type, payload FROM outbox_event ORDER BY seq`);
}

beforeAll(async () => {
  [database, redisServer] = await Promise.all([createTestDatabase("auth"), startTestRedis()]);
  redis = new Redis(redisServer.url);
  db = createDb(database.url);
  hasher = counting(await createArgon2Hasher());
  const secrets = generateDevSecrets();
  signer = await createAccessTokenSigner(secrets.JWT_PRIVATE_JWK, secrets.JWT_KEY_ID);
  auth = buildAuth();
});

afterAll(async () => {
  await db?.$disconnect();
  redis?.disconnect();
  await Promise.all([database?.drop(), redisServer?.stop()]);
});

beforeEach(() => {
  nowMs = Date.now();
});

describe("register", () => {
  it("rejects bad input with the field named", async () => {
    const base = { email: freshEmail(), phone: PHONE, password: PASSWORD, deviceId: DEVICE };
    const cases: Array<[Partial<typeof base>, string]> = [
      [{ email: "not-an-email" }, "email"],
      [{ email: "a b@example.com" }, "email"],
      [{ phone: "9876543210" }, "phone"],
      [{ phone: "+0123456789" }, "phone"],
      [{ phone: "+12" }, "phone"],
      [{ password: "Short1!" }, "password"],
      [{ password: "123456789012345" }, "password"],
      [{ password: "password1234" }, "password"],
      [{ password: `${"x".repeat(200)}A` }, "password"],
      [{ deviceId: "" }, "deviceId"],
      [{ deviceId: "has space" }, "deviceId"],
    ];
    for (const [override, field] of cases) {
      const error = await failure(auth.register({ ...base, ...override }));
      expect(error.code, JSON.stringify(override)).toBe("BAD_USER_INPUT");
      expect(error.details).toEqual({ field });
    }
  });

  it("refuses common passwords and the user's own email or phone, saying why in plain words", async () => {
    const email = freshEmail();
    const base = { email, phone: "+919812312312", password: PASSWORD, deviceId: DEVICE };
    for (const password of ["password1234", "qwertyuiop12", "Password1234!", email, `${email}1`, "+919812312312", "9812312312abc"]) {
      const error = await failure(auth.register({ ...base, password }));
      expect(error.code, password).toBe("BAD_USER_INPUT");
      expect(error.details, password).toEqual({ field: "password" });
      expect(error.message, password).toMatch(/^This password is too easy to guess\. /);
    }
    const common = await failure(auth.register({ ...base, password: "password1234" }));
    // zxcvbn's own warning, so the user learns what is wrong with it.
    expect(common.message).toContain("This is similar to a commonly used password.");
    // A passphrase of lower-case words is strong: no composition rule (NIST SP 800-63B).
    await expect(auth.register({ ...base, password: "tangerine orbit velvet" })).resolves.toMatchObject({ channel: "email" });
  });

  it("normalises the email, hashes with argon2id, encrypts the phone and emits auth.user.created in the outbox", async () => {
    const email = freshEmail();
    const challenge = await auth.register({
      email: `  ${email.toUpperCase()} `,
      phone: "+91 98765-43210",
      password: PASSWORD,
      deviceId: DEVICE,
    });
    expect(challenge).toMatchObject({ challengeId: expect.any(String), channel: "email" });
    expect(challenge.expiresAt.getTime() - nowMs).toBe(5 * 60_000);
    const row = await db.user.findUniqueOrThrow({ where: { email } });
    expect(row.role).toBe("CUSTOMER");
    expect(row.passwordHash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(row.phoneEncrypted).toMatch(/^v1\.k1\./);
    expect(JSON.stringify(row)).not.toContain("9876543210");
    expect(JSON.stringify(row)).not.toContain(PASSWORD);
    const [message] = await mailbox().read(email);
    expect(message?.body).toContain(message?.code);
    const events = await outbox();
    expect(events).toContainEqual(
      expect.objectContaining({
        type: "auth.user.created",
        payload: expect.objectContaining({ data: { userId: row.id, role: "CUSTOMER" } }),
      }),
    );
    // The challenge id in upper case is the same challenge (a uuid names one thing in either case).
    const payload = await auth.verifyOtp({ challengeId: challenge.challengeId.toUpperCase(), code: message!.code!, deviceId: DEVICE });
    expect(auth.maskedPhone(payload.user)).toBe("•••••••••3210");
  });

  it("answers a taken email exactly like a new one, creates nothing, and no code opens the decoy", async () => {
    const email = freshEmail();
    await auth.register({ email, phone: PHONE, password: PASSWORD, deviceId: DEVICE });
    const before = await db.user.count();
    const eventsBefore = (await outbox()).length;
    const other = freshEmail();
    const fresh = await auth.register({ email: other, phone: PHONE, password: PASSWORD, deviceId: DEVICE });
    const again = await auth.register({ email, phone: "+14155550100", password: "another pass 99", deviceId: DEVICE });
    expect(Object.keys(again).sort()).toEqual(Object.keys(fresh).sort());
    expect(again.channel).toBe(fresh.channel);
    expect(again.expiresAt.getTime() - nowMs).toBe(fresh.expiresAt.getTime() - nowMs);
    expect(await db.user.count()).toBe(before + 1); // only `other`
    expect((await outbox()).length).toBe(eventsBefore + 1);
    // Both paths pay for the same argon2 work, so timing does not tell a taken email apart.
    const freshWork = await argon2OperationsOf(() =>
      auth.register({ email: freshEmail(), phone: PHONE, password: PASSWORD, deviceId: DEVICE }),
    );
    const takenWork = await argon2OperationsOf(() => auth.register({ email, phone: PHONE, password: PASSWORD, deviceId: DEVICE }));
    expect(freshWork).toBeGreaterThan(0);
    expect(takenWork).toBe(freshWork);
    const [note] = await mailbox().read(email);
    expect(note?.code).toBeNull();
    expect(note?.body).toMatch(/already have one/);
    const error = await failure(auth.verifyOtp({ challengeId: again.challengeId, code: "123456", deviceId: DEVICE }));
    expect(error).toMatchObject({ code: "UNAUTHENTICATED", message: "The code is not correct" });
  });
});

describe("OTP", () => {
  it("is one-time: the same code does not open a second session", async () => {
    const email = freshEmail();
    const challenge = await auth.register({ email, phone: PHONE, password: PASSWORD, deviceId: DEVICE });
    const code = await lastCode(email);
    const payload = await auth.verifyOtp({ challengeId: challenge.challengeId, code, deviceId: DEVICE });
    expect(payload.refreshToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const again = await failure(auth.verifyOtp({ challengeId: challenge.challengeId, code, deviceId: DEVICE }));
    expect(again.code).toBe("UNAUTHENTICATED");
    expect(await redis.keys("auth:otp:*")).not.toContain(`auth:otp:${challenge.challengeId}`);
  });

  it("is kept only hashed in Redis, with a TTL", async () => {
    const email = freshEmail();
    const challenge = await auth.register({ email, phone: PHONE, password: PASSWORD, deviceId: DEVICE });
    const code = await lastCode(email);
    const stored = await redis.hgetall(`auth:otp:${challenge.challengeId}`);
    expect(JSON.stringify(stored)).not.toContain(code);
    const ttl = await redis.ttl(`auth:otp:${challenge.challengeId}`);
    expect(ttl).toBeGreaterThan(290);
    expect(ttl).toBeLessThanOrEqual(300);
  });

  it("burns the challenge after 5 wrong codes: the right one fails after that", async () => {
    // Lockout off, to see the OTP's own limit (with it on, the 5th wrong code also locks the email).
    const auth = buildAuth({ ...DEFAULT_LOCKOUT_POLICY, maxFailures: 1000 });
    const email = freshEmail();
    const challenge = await auth.register({ email, phone: PHONE, password: PASSWORD, deviceId: DEVICE });
    const code = await lastCode(email);
    const wrong = code === "000000" ? "111111" : "000000";
    const messages = [];
    for (let attempt = 1; attempt <= 5; attempt++) {
      const error = await failure(auth.verifyOtp({ challengeId: challenge.challengeId, code: wrong, deviceId: DEVICE }));
      messages.push(error.message);
    }
    expect(messages.slice(0, 4).every((m) => m === "The code is not correct")).toBe(true);
    expect(messages[4]).toMatch(/Too many wrong codes/);
    const after = await failure(auth.verifyOtp({ challengeId: challenge.challengeId, code, deviceId: DEVICE }));
    expect(after.code).toBe("UNAUTHENTICATED");
  });

  it("expires after 5 minutes", async () => {
    const email = freshEmail();
    const challenge = await auth.register({ email, phone: PHONE, password: PASSWORD, deviceId: DEVICE });
    const code = await lastCode(email);
    nowMs += 5 * 60_000 + 1;
    const error = await failure(auth.verifyOtp({ challengeId: challenge.challengeId, code, deviceId: DEVICE }));
    expect(error).toMatchObject({ code: "UNAUTHENTICATED", message: expect.stringMatching(/expired/) });
  });

  it("is bound to the device that asked for it", async () => {
    const email = freshEmail();
    const challenge = await auth.register({ email, phone: PHONE, password: PASSWORD, deviceId: DEVICE });
    const code = await lastCode(email);
    const error = await failure(auth.verifyOtp({ challengeId: challenge.challengeId, code, deviceId: "device-two" }));
    expect(error).toMatchObject({ code: "UNAUTHENTICATED", message: expect.stringMatching(/another device/) });
    // The owner's device still completes it.
    await auth.verifyOtp({ challengeId: challenge.challengeId, code, deviceId: DEVICE });
  });

  it("rejects a malformed code or challenge id without a hint", async () => {
    expect((await failure(auth.verifyOtp({ challengeId: "nope", code: "123456", deviceId: DEVICE }))).code).toBe("UNAUTHENTICATED");
    expect(await failure(auth.verifyOtp({ challengeId: crypto.randomUUID(), code: "12ab", deviceId: DEVICE }))).toMatchObject({
      code: "BAD_USER_INPUT",
      details: { field: "code" },
    });
  });
});

describe("login", () => {
  it("fails alike for an unknown email and a wrong password, in similar time", async () => {
    const { email } = await signIn();
    const wrong = await failure(auth.login({ email, password: "wrong password 1", deviceId: DEVICE }));
    const unknown = await failure(auth.login({ email: freshEmail(), password: "wrong password 1", deviceId: DEVICE }));
    expect({ code: unknown.code, message: unknown.message }).toEqual({ code: wrong.code, message: wrong.message });
    expect(wrong.code).toBe("UNAUTHENTICATED");
    const failed = (await outbox()).filter((e) => e.type === "auth.login.failed").slice(-2);
    expect(failed.map((e) => e.payload.data.reason)).toEqual(["invalid_credentials", "invalid_credentials"]);
    expect(failed[1]?.payload.data.userId).toBeNull();
    // Same argon2 work either way: an unknown email is verified against a decoy hash.
    const wrongWork = await argon2OperationsOf(() => failure(auth.login({ email, password: "wrong password 2", deviceId: DEVICE })));
    const unknownWork = await argon2OperationsOf(() =>
      failure(auth.login({ email: freshEmail(), password: "wrong password 2", deviceId: DEVICE })),
    );
    expect(wrongWork).toBe(1);
    expect(unknownWork).toBe(wrongWork);
  });

  it("sends an OTP on the right password; verifying it records the device, trusted from its second login", async () => {
    const { email, payload } = await signIn();
    const [first] = await auth.devices(payload.user.id);
    expect(first).toMatchObject({ fingerprint: DEVICE, trusted: false });
    const challenge = await auth.login({ email, password: PASSWORD, deviceId: DEVICE });
    await auth.verifyOtp({ challengeId: challenge.challengeId, code: await lastCode(email), deviceId: DEVICE });
    const other = await auth.login({ email: email.toUpperCase(), password: PASSWORD, deviceId: "laptop-2" });
    await auth.verifyOtp({ challengeId: other.challengeId, code: await lastCode(email), deviceId: "laptop-2" });
    const devices = await auth.devices(payload.user.id);
    expect(devices.map((d) => [d.fingerprint, d.trusted])).toEqual([
      [DEVICE, true],
      ["laptop-2", false],
    ]);
    const events = (await outbox()).filter((e) => e.payload.data.userId === payload.user.id);
    expect(events.filter((e) => e.type === "auth.device.registered")).toHaveLength(2);
    expect(events.filter((e) => e.type === "auth.login.succeeded").map((e) => [e.payload.data.method, e.payload.data.newDevice])).toEqual([
      ["register", true],
      ["login", false],
      ["login", true],
    ]);
  });

  it("locks an email after 5 failures for 1 minute, then 2, growing; unknown emails lock the same way", async () => {
    const { email } = await signIn();
    for (const target of [email, freshEmail()]) {
      for (let i = 1; i <= 4; i++) {
        expect((await failure(auth.login({ email: target, password: "wrong password 1", deviceId: DEVICE }))).code).toBe("UNAUTHENTICATED");
      }
      const fifth = await failure(auth.login({ email: target, password: "wrong password 1", deviceId: DEVICE }));
      expect(fifth).toMatchObject({ code: "RATE_LIMITED", details: { retryAfterSeconds: 60 } });
      // Even the right password waits out the lock.
      const meanwhile = await failure(auth.login({ email: target, password: PASSWORD, deviceId: DEVICE }));
      expect(meanwhile.code).toBe("RATE_LIMITED");
      nowMs += 61_000;
      for (let i = 1; i <= 4; i++) await failure(auth.login({ email: target, password: "wrong password 1", deviceId: DEVICE }));
      const second = await failure(auth.login({ email: target, password: "wrong password 1", deviceId: DEVICE }));
      expect(second).toMatchObject({ code: "RATE_LIMITED", details: { retryAfterSeconds: 120 } });
      nowMs += 121_000;
    }
    // After the lock, the right password works and resets the count.
    const challenge = await auth.login({ email, password: PASSWORD, deviceId: DEVICE });
    await auth.verifyOtp({ challengeId: challenge.challengeId, code: await lastCode(email), deviceId: DEVICE });
    const failed = (await outbox()).filter((e) => e.type === "auth.login.failed" && e.payload.data.lockedForSeconds !== null);
    expect(failed.slice(-2).map((e) => e.payload.data.lockedForSeconds)).toEqual([60, 120]);
  });

  it("counts wrong OTPs towards the lockout", async () => {
    const email = freshEmail();
    await auth.register({ email, phone: PHONE, password: PASSWORD, deviceId: DEVICE });
    const challenge = await auth.login({ email, password: PASSWORD, deviceId: DEVICE });
    const code = await lastCode(email);
    const wrong = code === "000000" ? "111111" : "000000";
    for (let i = 1; i <= 4; i++) await failure(auth.verifyOtp({ challengeId: challenge.challengeId, code: wrong, deviceId: DEVICE }));
    const fifth = await failure(auth.verifyOtp({ challengeId: challenge.challengeId, code: wrong, deviceId: DEVICE }));
    expect(fifth).toMatchObject({ code: "RATE_LIMITED", details: { retryAfterSeconds: 60 } });
    expect((await failure(auth.login({ email, password: PASSWORD, deviceId: DEVICE }))).code).toBe("RATE_LIMITED");
  });
});

describe("OTP delivery through a real SMTP server", () => {
  it("answers UNAVAILABLE when the code cannot be sent, leaves nothing a retry trips on, and works once mail flows", async () => {
    const smtp = await startTestSmtpServer();
    const sender = createSmtpNotifier(
      {
        host: smtp.host,
        port: smtp.port,
        tls: "starttls",
        user: smtp.user,
        password: smtp.password,
        from: "no-reply@vaultpay.test",
        caFile: smtp.caFile,
        timeoutMs: 5_000,
        retry: { maxAttempts: 2, backoffMs: 10 },
      },
      createLogger({ service: "auth-test", level: "silent" }),
    );
    const withMail = buildAuth(DEFAULT_LOCKOUT_POLICY, sender);
    const codeIn = (to: string) => /code is ([0-9]{6})/.exec(smtp.received.filter((mail) => mail.to.includes(to)).at(-1)?.text ?? "")?.[1];
    try {
      const email = freshEmail();
      const users = await db.user.count();
      smtp.failNext(2, 451);
      const down = await failure(withMail.register({ email, phone: PHONE, password: PASSWORD, deviceId: DEVICE }));
      expect(down).toMatchObject({ code: "UNAVAILABLE", details: { retryAfterSeconds: 30, reason: "OTP_DELIVERY_FAILED" } });
      expect(down.details).not.toHaveProperty("challengeId");
      // No account for a code that never went out: the retry registers afresh, not "you already have one".
      expect(await db.user.count()).toBe(users);
      const challenge = await withMail.register({ email, phone: PHONE, password: PASSWORD, deviceId: DEVICE });
      expect(codeIn(email)).toMatch(/^[0-9]{6}$/);
      await withMail.verifyOtp({ challengeId: challenge.challengeId, code: codeIn(email)!, deviceId: DEVICE });

      // Login: the right password is not counted as a failure, and the challenge stays live.
      smtp.failNext(2, 451);
      const loginDown = await failure(withMail.login({ email, password: PASSWORD, deviceId: DEVICE }));
      expect(loginDown).toMatchObject({ code: "UNAVAILABLE", details: { retryAfterSeconds: 30, challengeId: expect.any(String) } });
      expect(await redis.exists(`auth:otp:${String(loginDown.details.challengeId)}`)).toBe(1);
      const again = await withMail.login({ email, password: PASSWORD, deviceId: DEVICE });
      const session = await withMail.verifyOtp({ challengeId: again.challengeId, code: codeIn(email)!, deviceId: DEVICE });
      expect(session.user.email).toBe(email);
      const failures = (await outbox()).filter((e) => e.type === "auth.login.failed" && e.payload.data.userId === session.user.id);
      expect(failures).toEqual([]);
    } finally {
      sender.close();
      await smtp.stop();
    }
  });
});

describe("lockout per client", () => {
  const wrongFrom = (email: string, address: string) =>
    failure(auth.login({ email, password: "wrong password 1", deviceId: DEVICE, client: { address } }));

  it("locks (email, address) after 5 failures; the customer signs in from another address meanwhile", async () => {
    const { email } = await signIn();
    for (let i = 1; i <= 4; i++) expect((await wrongFrom(email, "203.0.113.9")).code).toBe("UNAUTHENTICATED");
    expect(await wrongFrom(email, "203.0.113.9")).toMatchObject({ code: "RATE_LIMITED", details: { retryAfterSeconds: 60 } });
    // The attacker's address waits, even with the right password…
    const attacker = await failure(auth.login({ email, password: PASSWORD, deviceId: DEVICE, client: { address: "203.0.113.9" } }));
    expect(attacker.code).toBe("RATE_LIMITED");
    // …the customer's does not.
    const challenge = await auth.login({ email, password: PASSWORD, deviceId: DEVICE, client: { address: "198.51.100.7" } });
    await expect(
      auth.verifyOtp({ challengeId: challenge.challengeId, code: await lastCode(email), deviceId: DEVICE }),
    ).resolves.toMatchObject({ user: { email } });
  });

  it("locks the account everywhere after 50 failures spread over many addresses (the slower ceiling)", async () => {
    const { email } = await signIn();
    for (let i = 0; i < 49; i++) expect((await wrongFrom(email, `198.18.${Math.floor(i / 4)}.${i % 4}`)).code).toBe("UNAUTHENTICATED");
    expect(await wrongFrom(email, "198.18.100.1")).toMatchObject({ code: "RATE_LIMITED", details: { retryAfterSeconds: 300 } });
    const fresh = await failure(auth.login({ email, password: PASSWORD, deviceId: DEVICE, client: { address: "192.0.2.44" } }));
    expect(fresh).toMatchObject({ code: "RATE_LIMITED" });
    nowMs += 301_000;
    await expect(auth.login({ email, password: PASSWORD, deviceId: DEVICE, client: { address: "192.0.2.44" } })).resolves.toHaveProperty(
      "challengeId",
    );
  });
});

describe("DPoP device binding", () => {
  async function signInProven(jkt: string, email = freshEmail()) {
    const challenge = await auth.register({ email, phone: PHONE, password: PASSWORD, deviceId: "my-phone" });
    const payload = await auth.verifyOtp({
      challengeId: challenge.challengeId,
      code: await lastCode(email),
      deviceId: "my-phone",
      client: { provenDeviceKey: jkt },
    });
    return { email, payload };
  }

  it("registers the proven key as the device and binds the tokens to it (cnf.jkt, refresh row)", async () => {
    const device = await createDpopDevice();
    const { payload } = await signInProven(device.jkt);
    const caller = await callerOf(payload);
    expect(caller).toMatchObject({ deviceId: provenDeviceId(device.jkt), boundDeviceKey: device.jkt });
    expect(await auth.devices(payload.user.id)).toEqual([
      expect.objectContaining({ fingerprint: provenDeviceId(device.jkt), label: "my-phone" }),
    ]);
    const rows = await db.refreshToken.findMany({ where: { sessionId: caller.sessionId } });
    expect(rows.map((row) => row.dpopJkt)).toEqual([device.jkt]);
    const succeeded = (await outbox()).filter((e) => e.type === "auth.login.succeeded" && e.payload.data.userId === payload.user.id);
    expect(succeeded.map((e) => e.payload.data.deviceProven)).toEqual([true]);
    // A bearer sign-in stays a bearer session: no cnf claim.
    const { payload: bearer } = await signIn();
    expect((await callerOf(bearer)).boundDeviceKey).toBeUndefined();
  });

  it("refreshes a bound session only with a proof of its key; the new token stays bound", async () => {
    const device = await createDpopDevice();
    const thief = await createDpopDevice();
    const { payload } = await signInProven(device.jkt);
    const without = await failure(auth.refreshSession({ refreshToken: payload.refreshToken, deviceId: "my-phone" }));
    expect(without).toMatchObject({ code: "UNAUTHENTICATED", details: { reason: "DPOP_PROOF_REQUIRED" } });
    const otherKey = await failure(
      auth.refreshSession({ refreshToken: payload.refreshToken, deviceId: "my-phone", client: { provenDeviceKey: thief.jkt } }),
    );
    expect(otherKey.code).toBe("UNAUTHENTICATED");
    const next = await auth.refreshSession({
      refreshToken: payload.refreshToken,
      deviceId: "anything",
      client: { provenDeviceKey: device.jkt },
    });
    expect(await callerOf(next)).toMatchObject({ boundDeviceKey: device.jkt, deviceId: provenDeviceId(device.jkt) });
  });

  it("refuses a claimed device id shaped like a proven one", async () => {
    const error = await failure(auth.register({ email: freshEmail(), phone: PHONE, password: PASSWORD, deviceId: "jkt:abc" }));
    expect(error).toMatchObject({ code: "BAD_USER_INPUT", details: { field: "deviceId" } });
  });

  it("never locks out a login proving a device key registered for the user, whatever strangers did", async () => {
    const device = await createDpopDevice();
    const { email } = await signInProven(device.jkt);
    // Strangers everywhere: the account-wide ceiling and the customer's own address are locked.
    for (let i = 0; i < 50; i++)
      await failure(auth.login({ email, password: "wrong password 1", deviceId: DEVICE, client: { address: `198.18.7.${i}` } }));
    expect((await failure(auth.login({ email, password: PASSWORD, deviceId: DEVICE, client: { address: "198.18.7.1" } }))).code).toBe(
      "RATE_LIMITED",
    );
    // An unregistered key is a stranger too.
    const stranger = await createDpopDevice();
    expect(
      (await failure(auth.login({ email, password: PASSWORD, deviceId: DEVICE, client: { provenDeviceKey: stranger.jkt } }))).code,
    ).toBe("RATE_LIMITED");
    // The registered device signs in, OTP included.
    const challenge = await auth.login({ email, password: PASSWORD, deviceId: "my-phone", client: { provenDeviceKey: device.jkt } });
    const payload = await auth.verifyOtp({
      challengeId: challenge.challengeId,
      code: await lastCode(email),
      deviceId: "my-phone",
      client: { provenDeviceKey: device.jkt },
    });
    expect((await callerOf(payload)).boundDeviceKey).toBe(device.jkt);
    // The device is still limited on its own: 5 wrong passwords from it lock (email, device).
    for (let i = 1; i <= 4; i++)
      await failure(auth.login({ email, password: "wrong password 1", deviceId: "my-phone", client: { provenDeviceKey: device.jkt } }));
    expect(
      (await failure(auth.login({ email, password: "wrong password 1", deviceId: "my-phone", client: { provenDeviceKey: device.jkt } })))
        .code,
    ).toBe("RATE_LIMITED");
  });
});

describe("tokens and sessions", () => {
  it("signs an ES256 access token to kit's contract, verifiable from the public JWKS alone", async () => {
    const { payload } = await signIn();
    const jwks = signer.jwks();
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).not.toHaveProperty("d");
    expect(jwks.keys[0]).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", kid: expect.any(String) });
    const header = JSON.parse(Buffer.from(payload.accessToken.split(".")[0]!, "base64url").toString());
    expect(header).toMatchObject({ alg: "ES256", kid: jwks.keys[0]!.kid });
    const caller = await callerOf(payload);
    expect(caller).toMatchObject({
      userId: payload.user.id,
      role: "CUSTOMER",
      deviceId: DEVICE,
      sessionId: expect.any(String),
      tokenId: expect.any(String),
    });
    expect(payload.accessTokenExpiresAt.getTime() - Date.now()).toBeGreaterThan(14 * 60_000);
    expect(payload.accessTokenExpiresAt.getTime() - Date.now()).toBeLessThanOrEqual(15 * 60_000);
    const stored = await db.refreshToken.findMany({ where: { sessionId: caller.sessionId } });
    expect(stored.map((t) => t.tokenHash)).not.toContain(payload.refreshToken);
  });

  it("rotates refresh tokens; an old one reused after the grace window revokes the session", async () => {
    const { payload } = await signIn();
    const sessionId = (await callerOf(payload)).sessionId;
    const second = await auth.refreshSession({ refreshToken: payload.refreshToken, deviceId: DEVICE });
    expect(second.refreshToken).not.toBe(payload.refreshToken);
    expect((await callerOf(second)).sessionId).toBe(sessionId);
    const third = await auth.refreshSession({ refreshToken: second.refreshToken, deviceId: DEVICE });
    nowMs += 11_000;
    const reuse = await failure(auth.refreshSession({ refreshToken: second.refreshToken, deviceId: DEVICE }));
    expect(reuse.code).toBe("UNAUTHENTICATED");
    // The whole session is gone: even the newest token fails, and its access tokens are refused.
    expect((await failure(auth.refreshSession({ refreshToken: third.refreshToken, deviceId: DEVICE }))).code).toBe("UNAUTHENTICATED");
    expect(await redis.exists(revokedSessionKey(sessionId))).toBe(1);
    expect((await failure(auth.me(await callerOf(third)))).code).toBe("UNAUTHENTICATED");
    const session = await db.session.findUniqueOrThrow({ where: { id: sessionId } });
    expect(session.revokedReason).toBe("refresh_token_reuse");
    const revoked = (await outbox()).filter((e) => e.type === "auth.session.revoked" && e.payload.data.sessionId === sessionId);
    expect(revoked.map((e) => e.payload.data.reason)).toEqual(["refresh_token_reuse"]);
  });

  it("gives a second refresh of the same token within 10 s the same successor (two tabs), never a second family", async () => {
    const { payload } = await signIn();
    const sessionId = (await callerOf(payload)).sessionId;
    const tabA = await auth.refreshSession({ refreshToken: payload.refreshToken, deviceId: DEVICE });
    nowMs += 5_000;
    const tabB = await auth.refreshSession({ refreshToken: payload.refreshToken, deviceId: DEVICE });
    expect(tabB.refreshToken).toBe(tabA.refreshToken);
    expect((await callerOf(tabB)).sessionId).toBe(sessionId);
    const live = await db.refreshToken.findMany({ where: { sessionId, usedAt: null } });
    expect(live).toHaveLength(1);
    // The successor rotates once; presenting it again past the window is reuse and ends the session.
    const next = await auth.refreshSession({ refreshToken: tabA.refreshToken, deviceId: DEVICE });
    nowMs += 11_000;
    expect((await failure(auth.refreshSession({ refreshToken: tabB.refreshToken, deviceId: DEVICE }))).code).toBe("UNAUTHENTICATED");
    expect((await failure(auth.refreshSession({ refreshToken: next.refreshToken, deviceId: DEVICE }))).code).toBe("UNAUTHENTICATED");
  });

  it("lets two refreshes racing with one token share one successor: one live token per session", async () => {
    const { payload } = await signIn();
    const sessionId = (await callerOf(payload)).sessionId;
    const results = await Promise.allSettled(
      Array.from({ length: 4 }, () => auth.refreshSession({ refreshToken: payload.refreshToken, deviceId: DEVICE })),
    );
    const issued = new Set(results.flatMap((r) => (r.status === "fulfilled" ? [r.value.refreshToken] : [])));
    expect(issued.size).toBe(1);
    for (const r of results) if (r.status === "rejected") expect((r.reason as DomainError).code).toBe("UNAUTHENTICATED");
    const rows = await db.refreshToken.findMany({ where: { sessionId } });
    expect(rows).toHaveLength(2);
    expect(rows.filter((row) => row.usedAt === null)).toHaveLength(1);
    // Only one session exists for the user, and its successor is sealed, never stored in plaintext.
    expect(await db.session.count({ where: { userId: payload.user.id } })).toBe(1);
    const [token] = [...issued];
    expect(JSON.stringify(rows)).not.toContain(token);
    // The sealed successor is erased once a later rotation finds its grace window over.
    nowMs += 11_000;
    await auth.refreshSession({ refreshToken: token!, deviceId: DEVICE });
    const first = await db.refreshToken.findMany({ where: { sessionId, successorEncrypted: { not: null } } });
    expect(first.map((row) => row.usedAt?.getTime())).toEqual([nowMs]);
  });

  it("refuses a refresh from another device without ending the owner's session", async () => {
    const { payload } = await signIn();
    expect((await failure(auth.refreshSession({ refreshToken: payload.refreshToken, deviceId: "thief" }))).code).toBe("UNAUTHENTICATED");
    await auth.refreshSession({ refreshToken: payload.refreshToken, deviceId: DEVICE });
    expect((await failure(auth.refreshSession({ refreshToken: "garbage", deviceId: DEVICE }))).code).toBe("UNAUTHENTICATED");
  });

  it("logout revokes the session in the database and in Redis for the access-token lifetime", async () => {
    const { payload } = await signIn();
    const caller = await callerOf(payload);
    expect((await auth.me(caller)).id).toBe(payload.user.id);
    expect((await failure(auth.logout(undefined))).code).toBe("UNAUTHENTICATED");
    expect(await auth.logout(caller)).toBe(true);
    const ttl = await redis.ttl(revokedSessionKey(caller.sessionId));
    expect(ttl).toBeGreaterThan(14 * 60);
    expect(ttl).toBeLessThanOrEqual(15 * 60);
    expect((await db.session.findUniqueOrThrow({ where: { id: caller.sessionId } })).revokedReason).toBe("logout");
    expect((await failure(auth.me(caller))).code).toBe("UNAUTHENTICATED");
    expect((await failure(auth.refreshSession({ refreshToken: payload.refreshToken, deviceId: DEVICE }))).code).toBe("UNAUTHENTICATED");
  });
});

describe("users and the administrator", () => {
  it("seeds the admin once, idempotently, and never promotes an existing customer", async () => {
    const adminEmail = freshEmail();
    expect(await auth.ensureAdmin(adminEmail, "Admin password 1")).toBe("created");
    expect(await auth.ensureAdmin(adminEmail, "Admin password 1")).toBe("exists");
    expect(await buildAuth().ensureAdmin(adminEmail.toUpperCase(), "Admin password 1")).toBe("exists");
    expect(await db.user.count({ where: { email: adminEmail } })).toBe(1);
    const admin = await db.user.findUniqueOrThrow({ where: { email: adminEmail } });
    expect(admin.role).toBe("ADMIN");
    const { email } = await signIn();
    expect(await auth.ensureAdmin(email, "Admin password 1")).toBe("exists");
    expect((await db.user.findUniqueOrThrow({ where: { email } })).role).toBe("CUSTOMER");
  });

  it("lists users for an ADMIN only (token role and stored role), paged by id", async () => {
    const adminEmail = freshEmail();
    await auth.ensureAdmin(adminEmail, "Admin password 1");
    const challenge = await auth.login({ email: adminEmail, password: "Admin password 1", deviceId: DEVICE });
    const admin = await auth.verifyOtp({ challengeId: challenge.challengeId, code: await lastCode(adminEmail), deviceId: DEVICE });
    const adminCaller = await callerOf(admin);
    expect(adminCaller.role).toBe("ADMIN");
    expect(auth.maskedPhone(admin.user)).toBeNull();
    const { payload } = await signIn();
    const customer = await callerOf(payload);
    expect((await failure(auth.users(customer, { first: 10 }))).code).toBe("FORBIDDEN");
    // A forged role claim alone is not enough: the stored role must agree.
    expect((await failure(auth.users({ ...customer, role: "ADMIN" }, { first: 10 }))).code).toBe("FORBIDDEN");
    expect((await failure(auth.users(undefined, { first: 10 }))).code).toBe("UNAUTHENTICATED");
    const page1 = await auth.users(adminCaller, { first: 2 });
    expect(page1).toHaveLength(2);
    const page2 = await auth.users(adminCaller, { first: 2, after: page1[1]!.id });
    expect(page2[0]!.id > page1[1]!.id).toBe(true);
    expect(await failure(auth.users(adminCaller, { first: 1000 }))).toMatchObject({ code: "BAD_USER_INPUT", details: { field: "first" } });
  });

  it("lets a user see only themselves (or an ADMIN anyone)", async () => {
    const a = await signIn();
    const b = await signIn();
    const callerA = await callerOf(a.payload);
    expect(await auth.canSee(callerA, a.payload.user.id)).toBe(true);
    expect(await auth.canSee(callerA, b.payload.user.id)).toBe(false);
    expect(await auth.canSee(undefined, a.payload.user.id)).toBe(false);
    expect(await auth.canSee({ ...callerA, role: "ADMIN" }, b.payload.user.id)).toBe(true);
  });
});

describe("events", () => {
  it("never carry a password, code, token, phone or email", async () => {
    const { email, payload } = await signIn();
    await auth.refreshSession({ refreshToken: payload.refreshToken, deviceId: DEVICE });
    // This user's codes only: hundreds of random 6-digit codes could match digits inside some uuid.
    const codes = (await mailbox().read(email)).map((m) => m.code).filter((code): code is string => code !== null);
    expect(codes.length).toBeGreaterThan(0);
    const all = JSON.stringify(await outbox());
    for (const secret of [PASSWORD, "9876543210", payload.accessToken, payload.refreshToken, email, ...codes]) {
      expect(all).not.toContain(secret);
    }
    expect(new Set((await outbox()).map((e) => e.type))).toEqual(
      new Set(["auth.user.created", "auth.login.succeeded", "auth.login.failed", "auth.device.registered", "auth.session.revoked"]),
    );
  });
});
