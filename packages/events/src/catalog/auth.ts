import { z } from "zod";
import { defineEvent, id } from "./define.ts";

const role = z.enum(["CUSTOMER", "ADMIN"]);
/** A client's device fingerprint (what it sends as x-device-id); an identifier, not a secret. */
const deviceFingerprint = z.string().min(1).max(128);

/**
 * Events of the auth service (stream AUTH). Ids and reasons only: no email, phone, password, OTP
 * or token ever travels here.
 */
export const authEvents = {
  "auth.user.created": defineEvent(1, z.object({ userId: id, role })),
  "auth.login.succeeded": defineEvent(
    1,
    z.object({
      userId: id,
      sessionId: id,
      deviceId: deviceFingerprint,
      /** The OTP challenge came from register (first sign-in) or login. */
      method: z.enum(["register", "login"]),
      /** First verified login from this device for this user (a fraud signal). */
      newDevice: z.boolean(),
      /**
       * The device is a DPoP key the client proved holding (deviceId = "jkt:<thumbprint>"), not an
       * id it claimed. Absent in events from before device binding: false.
       */
      deviceProven: z.boolean().default(false),
    }),
  ),
  "auth.login.failed": defineEvent(
    1,
    z.object({
      /** Null when the email matches no user (the API response does not say so). */
      userId: id.nullable(),
      reason: z.enum(["invalid_credentials", "invalid_otp", "otp_expired", "otp_burned", "device_mismatch", "locked"]),
      /** Set when this failure started a lockout. */
      lockedForSeconds: z.number().int().positive().nullable(),
    }),
  ),
  "auth.device.registered": defineEvent(1, z.object({ userId: id, deviceRecordId: id, deviceId: deviceFingerprint })),
  "auth.session.revoked": defineEvent(1, z.object({ userId: id, sessionId: id, reason: z.enum(["logout", "refresh_token_reuse"]) })),
} as const;
