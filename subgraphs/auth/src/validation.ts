import { DomainError } from "@vaultpay/kit";

/** Input rules of register/login. Errors are BAD_USER_INPUT with `extensions.field`. */

export const EMAIL_MAX_LENGTH = 254;
export const PASSWORD_MIN_LENGTH = 12;
/** argon2 takes any length, but an unbounded input is free CPU for an attacker. */
export const PASSWORD_MAX_LENGTH = 128;
export const PASSWORD_MIN_CLASSES = 2;
const DEVICE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
// Deliberately simple: one @, no spaces, a dot in the domain. Deliverability is proven by the OTP.
const EMAIL_PATTERN = /^[^\s@]+@[^\s@]+\.[^\s@.]+$/;
/** E.164: a plus, a country code not starting with 0, 8–15 digits in all. */
const E164_PATTERN = /^\+[1-9][0-9]{7,14}$/;

function invalid(field: string, message: string): DomainError {
  return new DomainError("BAD_USER_INPUT", message, { field });
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export function parseEmail(email: string, field = "email"): string {
  const normalized = normalizeEmail(email);
  if (normalized.length > EMAIL_MAX_LENGTH || !EMAIL_PATTERN.test(normalized)) throw invalid(field, "Email address is not valid");
  return normalized;
}

/** Accepts common separators (spaces, dashes, dots, parentheses) and stores the bare E.164 form. */
export function parsePhone(phone: string, field = "phone"): string {
  const compact = phone.replace(/[\s().-]/g, "");
  if (!E164_PATTERN.test(compact)) throw invalid(field, "Phone number must be in international E.164 form, e.g. +919876543210");
  return compact;
}

export function parseDeviceId(deviceId: string, field = "deviceId"): string {
  if (!DEVICE_ID_PATTERN.test(deviceId)) throw invalid(field, "Device id must be 1–128 characters of A-Z a-z 0-9 . _ : -");
  return deviceId;
}

/**
 * Password policy: 12–128 characters with at least two of four classes (lower case, upper case,
 * digits, anything else), so "aaaaaaaaaaaa" and "123456789012" fail but a passphrase with a digit
 * or a capital passes. Length matters more than composition (NIST SP 800-63B); the class rule only
 * stops the most trivial inputs. Returns the problem, or undefined when the password is acceptable.
 */
export function checkPasswordPolicy(password: string): string | undefined {
  if (password.length < PASSWORD_MIN_LENGTH) return `Password must be at least ${PASSWORD_MIN_LENGTH} characters`;
  if (password.length > PASSWORD_MAX_LENGTH) return `Password must be at most ${PASSWORD_MAX_LENGTH} characters`;
  const classes = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^a-zA-Z0-9]/].filter((pattern) => pattern.test(password)).length;
  if (classes < PASSWORD_MIN_CLASSES) return "Password must mix at least two of: lower case, upper case, digits, symbols";
  return undefined;
}

export function parseNewPassword(password: string, field = "password"): string {
  const problem = checkPasswordPolicy(password);
  if (problem) throw invalid(field, problem);
  return password;
}

/** Bounds on what login hashes: longer input cannot be a valid password anyway. */
export function isPlausiblePassword(password: string): boolean {
  return password.length > 0 && password.length <= PASSWORD_MAX_LENGTH;
}
