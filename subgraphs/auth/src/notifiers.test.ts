/** The real senders against real providers on loopback: an SMTP server with STARTTLS and a login, an SMS provider over HTTP. */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "@vaultpay/kit";
import { startTestSmsProvider, startTestSmtpServer, type TestSmsProvider, type TestSmtpServer } from "@vaultpay/testing";
import { DeliveryError, createSmsNotifier, createSmtpNotifier, routeByChannel } from "./notifiers.ts";
import { otpMessage, transferNoticeMessage } from "./messages.ts";

const logger = createLogger({ service: "notifier-test", level: "silent" });
const retry = { maxAttempts: 3, backoffMs: 10 };

async function failure(promise: Promise<unknown>): Promise<DeliveryError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DeliveryError);
  return error as DeliveryError;
}

describe("SMTP notifier", () => {
  let smtp: TestSmtpServer;
  const settings = () => ({
    host: smtp.host,
    port: smtp.port,
    tls: "starttls" as const,
    user: smtp.user,
    password: smtp.password,
    from: "VaultPay <no-reply@vaultpay.test>",
    caFile: smtp.caFile,
    timeoutMs: 5_000,
    retry,
  });

  beforeAll(async () => {
    smtp = await startTestSmtpServer();
  });
  afterAll(async () => {
    await smtp?.stop();
  });
  beforeEach(() => {
    smtp.received.length = 0;
    smtp.failNext(0);
  });

  it("sends the OTP over STARTTLS with its login and from-address, from the template", async () => {
    const notifier = createSmtpNotifier(settings(), logger);
    try {
      const content = otpMessage("042917", 300);
      await notifier.send({ to: "asha@example.com", channel: "email", subject: content.subject, body: content.text, code: "042917" });
      expect(smtp.received).toHaveLength(1);
      const [mail] = smtp.received;
      expect(mail).toMatchObject({
        from: "no-reply@vaultpay.test",
        to: ["asha@example.com"],
        subject: "Your VaultPay sign-in code",
        secure: true,
        user: smtp.user,
      });
      expect(mail!.text).toContain("Your VaultPay code is 042917. It expires in 5 minutes.");
    } finally {
      notifier.close();
    }
  });

  it("tries a temporary refusal again, a bounded number of times", async () => {
    const notifier = createSmtpNotifier(settings(), logger);
    try {
      smtp.failNext(2, 451);
      const notice = transferNoticeMessage({ transferId: "t-1", status: "COMPLETED", amountMinor: 2500050n, currency: "INR" });
      await notifier.send({ to: "asha@example.com", channel: "email", subject: notice.subject, body: notice.text, code: null });
      expect(smtp.received.map((mail) => mail.subject)).toEqual(["Transfer of 25000.50 INR completed"]);
      smtp.failNext(5, 451);
      const error = await failure(notifier.send({ to: "asha@example.com", channel: "email", body: "x", code: null }));
      expect(error).toMatchObject({ channel: "email", transient: true });
      expect(error.message).toBe("email delivery failed: SMTP 451");
      expect(smtp.received).toHaveLength(1);
    } finally {
      notifier.close();
    }
  });

  it("does not retry a permanent refusal, and refuses a server whose certificate it does not trust", async () => {
    const wrongPassword = createSmtpNotifier({ ...settings(), password: "wrong" }, logger);
    const untrusted = createSmtpNotifier({ ...settings(), caFile: undefined, retry: { maxAttempts: 1, backoffMs: 0 } }, logger);
    try {
      const refused = await failure(wrongPassword.send({ to: "a@example.com", channel: "email", body: "x", code: null }));
      expect(refused.transient).toBe(false);
      expect(refused.message).not.toContain("wrong");
      await failure(untrusted.send({ to: "a@example.com", channel: "email", body: "x", code: null }));
      expect(smtp.received).toHaveLength(0);
    } finally {
      wrongPassword.close();
      untrusted.close();
    }
  });
});

describe("SMS notifier", () => {
  let provider: TestSmsProvider;
  const settings = () => ({ url: provider.url, signingSecret: provider.secret, timeoutMs: 500, retry });

  beforeAll(async () => {
    provider = await startTestSmsProvider();
  });
  afterAll(async () => {
    await provider?.stop();
  });
  beforeEach(() => {
    provider.received.length = 0;
    provider.failNext(0, 503);
  });

  it("posts a body the provider verifies with the shared key; a wrong key is refused without retries", async () => {
    await createSmsNotifier(settings(), logger).send({
      to: "+919800000001",
      channel: "sms",
      body: "Your transfer has completed.",
      code: null,
    });
    expect(provider.received).toEqual([{ id: expect.any(String), to: "+919800000001", text: "Your transfer has completed." }]);
    const before = provider.refusedSignatures;
    const forged = createSmsNotifier({ ...settings(), signingSecret: "x".repeat(40) }, logger);
    const error = await failure(forged.send({ to: "+919800000001", channel: "sms", body: "forged", code: null }));
    expect(error).toMatchObject({ transient: false, message: "sms delivery failed: provider answered 401" });
    expect(provider.refusedSignatures).toBe(before + 1);
    expect(provider.received).toHaveLength(1);
  });

  it("retries 5xx and a provider that does not answer in time, within bounds, sending once", async () => {
    provider.failNext(2, 503);
    await createSmsNotifier(settings(), logger).send({ to: "+919800000002", channel: "sms", body: "after two 503s", code: null });
    expect(provider.received.map((sms) => sms.text)).toEqual(["after two 503s"]);
    provider.failNext(3, "hang");
    const startedAt = Date.now();
    const error = await failure(
      createSmsNotifier(settings(), logger).send({ to: "+919800000003", channel: "sms", body: "never", code: null }),
    );
    expect(error).toMatchObject({ transient: true, message: "sms delivery failed: no answer in 500 ms" });
    // Three attempts of 500 ms plus 10 + 20 ms of backoff: bounded, not a hung request.
    expect(Date.now() - startedAt).toBeLessThan(3_000);
    provider.failNext(1, 400);
    await failure(createSmsNotifier(settings(), logger).send({ to: "+919800000004", channel: "sms", body: "bad request", code: null }));
    expect(provider.received).toHaveLength(1);
  });

  it("routes by channel and refuses a channel with no sender", async () => {
    const route = routeByChannel({ sms: createSmsNotifier(settings(), logger) });
    expect(route.has("sms")).toBe(true);
    expect(route.has("email")).toBe(false);
    await failure(route.send({ to: "a@example.com", channel: "email", body: "x", code: null }));
  });
});
