import { Redis } from "ioredis";
import { keyRingFrom } from "@vaultpay/crypto";
import { ConfigError, JWKS_PATH, loadConfig } from "@vaultpay/kit";
import { runSubgraphService, serviceStatus } from "@vaultpay/service";
import { AuthService } from "./auth.ts";
import { assertNotifierAvailable, authConfigSchema, type AuthConfig } from "./config.ts";
import { createDb, type Db, type Tx } from "./db.ts";
import { Lockout } from "./lockout.ts";
import { OtpChallenges } from "./otp.ts";
import { createArgon2Hasher } from "./passwords.ts";
import { createDevMailbox, createRedisLockoutStore, createRedisOtpStore, createRedisSessionRevocations } from "./redis.ts";
import { createResolvers, type AuthContext } from "./resolvers.ts";
import { createPrismaAuthStore } from "./store.ts";
import { createAccessTokenSigner, type AccessTokenSigner } from "./tokens.ts";

// Refused before anything starts, with one line (runSubgraphService validates the rest the same way).
try {
  assertNotifierAvailable(loadConfig(authConfigSchema));
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`${error.message}\n`);
  process.exit(78);
}

let signer: AccessTokenSigner | undefined;

await runSubgraphService<Db, Tx, AuthConfig, AuthContext>({
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
    const mailbox = createDevMailbox(redis);
    const auth = new AuthService({
      store: createPrismaAuthStore(db, () => eventing.relay.kick()),
      otp: new OtpChallenges({ store: createRedisOtpStore(redis), pepper: config.OTP_PEPPER, now: () => new Date() }),
      lockout: new Lockout(createRedisLockoutStore(redis), config.OTP_PEPPER, () => new Date()),
      hasher: await createArgon2Hasher(),
      signer,
      revocations: createRedisSessionRevocations(redis),
      notifier: mailbox,
      keyRing: keyRingFrom(config),
      logger,
      refreshGraceSeconds: config.REFRESH_REUSE_GRACE_SECONDS,
    });
    await auth.ensureAdmin(config.ADMIN_EMAIL, config.ADMIN_PASSWORD);
    return createResolvers({
      auth,
      mailbox: config.NODE_ENV === "production" ? undefined : mailbox,
      status: serviceStatus(runtime, "auth"),
    });
  },
  // Both come from the gateway: x-forwarded-for and the proven key under its signed assertion (kit).
  context: async (_runtime, _request, requestContext, caller) => ({
    caller,
    client: { address: requestContext.actor.ip, provenDeviceKey: requestContext.provenDeviceKey },
  }),
});
