import type { Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { DomainError } from "@vaultpay/kit";

export interface RateLimitSettings {
  /** Requests per window from one address, metered before parsing. */
  requestsPerWindow: number;
  /** Operations per window for one user (or one IP when anonymous). */
  operationsPerWindow: number;
  /** Attempts per window at credential mutations (register, login, verifyOtp, refreshSession), per IP and per email. */
  credentialAttemptsPerWindow: number;
  windowSeconds: number;
}

/**
 * Redis-backed limits (rate-limiter-flexible), shared by every gateway replica. If Redis is down an
 * in-memory limiter of the same size takes over per replica, so limits weaken but never vanish.
 */
export class RateLimits {
  private readonly requests: RateLimiterRedis;
  private readonly operations: RateLimiterRedis;
  private readonly credentials: RateLimiterRedis;

  constructor(redis: Redis, settings: RateLimitSettings) {
    const make = (keyPrefix: string, points: number) =>
      new RateLimiterRedis({
        storeClient: redis,
        keyPrefix,
        points,
        duration: settings.windowSeconds,
        insuranceLimiter: new RateLimiterMemory({ keyPrefix: `${keyPrefix}:mem`, points, duration: settings.windowSeconds }),
      });
    this.requests = make("gw:rl:req", settings.requestsPerWindow);
    this.operations = make("gw:rl:op", settings.operationsPerWindow);
    this.credentials = make("gw:rl:cred", settings.credentialAttemptsPerWindow);
  }

  /** One request (or graphql-ws subscribe) from this address, whatever it holds. */
  async request(ip: string): Promise<void> {
    await consume(this.requests, `ip:${ip}`);
  }

  /** One operation by this user or IP. */
  async operation(key: string): Promise<void> {
    await consume(this.operations, key);
  }

  /** One credential attempt, counted against each key (the IP, the email tried). */
  async credentialAttempt(keys: string[]): Promise<void> {
    for (const key of keys) await consume(this.credentials, key);
  }
}

async function consume(limiter: RateLimiterRedis, key: string): Promise<void> {
  try {
    await limiter.consume(key, 1);
  } catch (rejection) {
    if (rejection instanceof RateLimiterRes) {
      const retryAfterSeconds = Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
      throw new DomainError("RATE_LIMITED", `Too many requests; retry in ${retryAfterSeconds} s`, { retryAfterSeconds });
    }
    throw rejection;
  }
}
