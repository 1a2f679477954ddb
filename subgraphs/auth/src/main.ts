import { Redis } from "ioredis";
import { keyRingFrom } from "@vaultpay/crypto";
import { JWKS_PATH, type Logger } from "@vaultpay/kit";
import { runSubgraphService, serviceStatus } from "@vaultpay/service";
import { AuthService, type Notifier } from "./service.ts";
import { authConfigSchema, type AuthConfig } from "./config.ts";
import { createDb } from "./db.ts";
import { Lockout } from "./lockout.ts";
import { OtpChallenges } from "./otp.ts";
import { createArgon2Hasher } from "./passwords.ts";
import { createDevMailbox, createRedisLockoutStore, createRedisOtpStore, createRedisSessionRevocations } from "./redis.ts";
import { alsoTo, createSmsNotifier, createSmtpNotifier, routeByChannel } from "./notifiers.ts";
import { TransferNoticeSender, startNoticeConsumers, stuckSendingNotices } from "./notices.ts";
import { createResolvers } from "./resolvers.ts";
import { createPrismaAuthStore } from "./store.ts";
import { createAccessTokenSigner, type AccessTokenSigner } from "./tokens.ts";

/**
 * The senders by channel: SMTP when configured (always in production: the config requires it),
 * an SMS provider when configured. Outside production the dev mailbox sees every message too.
 */
function createNotifier(config: AuthConfig, logger: Logger, devMailbox: Notifier | undefined) {
  const retry = (maxAttempts: number) => ({ maxAttempts, backoffMs: config.NOTIFIER_RETRY_BACKOFF_MS });
  const email = config.SMTP_HOST
    ? createSmtpNotifier(
        {
          host: config.SMTP_HOST,
          port: config.SMTP_PORT,
          tls: config.SMTP_TLS,
          user: config.SMTP_USER,
          password: config.SMTP_PASSWORD,
          from: config.SMTP_FROM!,
          caFile: config.SMTP_CA_FILE,
          timeoutMs: config.SMTP_TIMEOUT_MS,
          retry: retry(config.SMTP_MAX_ATTEMPTS),
        },
        logger,
      )
    : undefined;
  const sms =
    config.SMS_PROVIDER_URL && config.SMS_SIGNING_SECRET
      ? createSmsNotifier(
          {
            url: config.SMS_PROVIDER_URL,
            signingSecret: config.SMS_SIGNING_SECRET,
            timeoutMs: config.SMS_TIMEOUT_MS,
            retry: retry(config.SMS_MAX_ATTEMPTS),
          },
          logger,
        )
      : undefined;
  const wrap = (real: Notifier | undefined) => (real ? alsoTo(real, devMailbox) : devMailbox);
  return { notifier: routeByChannel({ email: wrap(email), sms: wrap(sms) }), close: () => email?.close() };
}

let signer: AccessTokenSigner | undefined;

await runSubgraphService({
  name: "auth",
  schemaUrl: new URL("./schema.graphql", import.meta.url),
  configSchema: authConfigSchema,
  createDb,
  routes: () => ({ [JWKS_PATH]: async () => signer!.jwks() }),
  wire: async (runtime) => {
    const { config, logger, lifecycle, db, eventing } = runtime;
    const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 3 });
    lifecycle.onShutdown("redis", async () => {
      await redis.quit();
    });
    signer = await createAccessTokenSigner(config.JWT_PRIVATE_JWK, config.JWT_KEY_ID);
    const mailbox = config.NODE_ENV === "production" ? undefined : createDevMailbox(redis);
    const senders = createNotifier(config, logger, mailbox);
    lifecycle.onShutdown("notifiers", async () => senders.close());
    const auth = new AuthService({
      store: createPrismaAuthStore(db, (events) => eventing.relay.publishCommitted(events)),
      otp: new OtpChallenges({ store: createRedisOtpStore(redis), pepper: config.OTP_PEPPER, now: () => new Date() }),
      lockout: new Lockout(createRedisLockoutStore(redis), config.OTP_PEPPER, () => new Date()),
      hasher: await createArgon2Hasher(),
      signer,
      revocations: createRedisSessionRevocations(redis),
      notifier: senders.notifier,
      keyRing: keyRingFrom(config),
      logger,
      refreshGraceSeconds: config.REFRESH_REUSE_GRACE_SECONDS,
    });
    await auth.ensureAdmin(config.ADMIN_EMAIL, config.ADMIN_PASSWORD);
    const notices = new TransferNoticeSender({
      db: runtime.sql,
      notifier: senders.notifier,
      contactOf: (notice) => auth.contactFrom(notice),
      logger,
    });
    notices.start();
    runtime.metrics.gauge(
      "vaultpay_transfer_notices_stuck_sending",
      "Transfer notices whose send was interrupted (SENDING for over 5 minutes): the customer was not told",
      [],
      async () => [{ labels: {}, value: await stuckSendingNotices(db) }],
    );
    lifecycle.onShutdown("transfer notices", () => notices.stop());
    await startNoticeConsumers(eventing, logger, () => notices.kick());
    return createResolvers({
      auth,
      mailbox,
      status: serviceStatus(runtime, "auth"),
    });
  },
  // Both come from the gateway: x-forwarded-for and the proven key under its signed assertion (kit).
  context: async ({ caller, requestContext }) => ({
    caller,
    client: { address: requestContext.actor.ip, provenDeviceKey: requestContext.provenDeviceKey },
  }),
});
