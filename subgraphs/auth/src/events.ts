import { createEvent, type Event } from "@vaultpay/events";
import type { Role } from "@vaultpay/kit";

/**
 * What auth emits (stream AUTH; schemas in packages/events/src/catalog/auth.ts). Auth consumes
 * only transaction.completed / transaction.failed, to tell customers (notices.ts). Every event is appended to the outbox in the same transaction as the change it reports;
 * only ids and reasons go in — never an email, phone, password, OTP or token.
 */
export const authEvents = {
  userCreated: (userId: string, role: Role): Event => createEvent("auth.user.created", { userId, role }),
  loginSucceeded: (data: {
    userId: string;
    sessionId: string;
    deviceId: string;
    method: "register" | "login";
    newDevice: boolean;
    deviceProven: boolean;
  }): Event => createEvent("auth.login.succeeded", data),
  loginFailed: (
    userId: string | null,
    reason: "invalid_credentials" | "invalid_otp" | "otp_expired" | "otp_burned" | "device_mismatch" | "locked",
    lockedForSeconds: number | null,
  ): Event => createEvent("auth.login.failed", { userId, reason, lockedForSeconds }),
  deviceRegistered: (userId: string, deviceRecordId: string, deviceId: string): Event =>
    createEvent("auth.device.registered", { userId, deviceRecordId, deviceId }),
  sessionRevoked: (userId: string, sessionId: string, reason: "logout" | "refresh_token_reuse"): Event =>
    createEvent("auth.session.revoked", { userId, sessionId, reason }),
};
