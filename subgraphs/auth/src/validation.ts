import { ZxcvbnFactory, type ZxcvbnResult } from "@zxcvbn-ts/core";
import * as zxcvbnCommon from "@zxcvbn-ts/language-common";
import * as zxcvbnEnglish from "@zxcvbn-ts/language-en";
import { DomainError, looksProven } from "@vaultpay/kit";

/** Input rules of register/login. Errors are BAD_USER_INPUT with `extensions.field`. */

export const EMAIL_MAX_LENGTH = 254;
export const PASSWORD_MIN_LENGTH = 12;
/** argon2 takes any length, but an unbounded input is free CPU for an attacker. */
export const PASSWORD_MAX_LENGTH = 128;
/**
 * zxcvbn's score (0–4) a new password needs: 3 is "safely unguessable: moderate protection from an
 * offline slow-hash scenario" (about 10^10 guesses), which argon2id makes expensive.
 */
export const PASSWORD_MIN_STRENGTH = 3;
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
  // Ids of proven devices are made from a verified key; a client cannot claim one.
  if (looksProven(deviceId)) throw invalid(field, "Device ids starting with jkt: are reserved for DPoP-proven devices");
  return deviceId;
}

// Built once: loading the dictionaries (common passwords, names, English words) takes a moment.
const strength = new ZxcvbnFactory({
  translations: zxcvbnEnglish.translations,
  graphs: zxcvbnCommon.adjacencyGraphs,
  dictionary: { ...zxcvbnCommon.dictionary, ...zxcvbnEnglish.dictionary },
});

/** What the user told us about themselves: a password built from it is guessed first. */
export function personalInputs(about: { email?: string | undefined; phone?: string | undefined }): string[] {
  const inputs: string[] = [];
  if (about.email) {
    const email = normalizeEmail(about.email);
    inputs.push(email, ...email.split(/[@.+_-]/).filter((part) => part.length >= 3));
  }
  if (about.phone) {
    const digits = about.phone.replace(/[^0-9]/g, "");
    // The whole number and its national part (what people type without the country code).
    inputs.push(digits, digits.slice(-10));
  }
  return inputs;
}

function weakPasswordMessage(result: ZxcvbnResult): string {
  const warning = result.feedback.warning?.trim();
  const suggestion = result.feedback.suggestions[0]?.trim();
  const why = warning ? ` ${warning.endsWith(".") ? warning : `${warning}.`}` : "";
  const how = suggestion
    ? ` ${suggestion.endsWith(".") ? suggestion : `${suggestion}.`}`
    : " Try a few unrelated words with a number or symbol.";
  return `This password is too easy to guess.${why}${how}`;
}

/**
 * Password policy (NIST SP 800-63B §5.1.1.2): 12–128 characters, and not guessable — checked with
 * zxcvbn against lists of common and breached passwords, names, English words, keyboard patterns,
 * sequences and the user's own email and phone. No composition rule (NIST advises against them):
 * "password1234" has two classes and is the first thing an attacker tries, while a passphrase of
 * lower-case words is strong. Returns the problem in words the user understands, or undefined.
 */
export function checkPasswordPolicy(password: string, userInputs: readonly string[] = []): string | undefined {
  if (password.length < PASSWORD_MIN_LENGTH) return `Password must be at least ${PASSWORD_MIN_LENGTH} characters`;
  if (password.length > PASSWORD_MAX_LENGTH) return `Password must be at most ${PASSWORD_MAX_LENGTH} characters`;
  const result = strength.check(password, [...userInputs]);
  if (result.score < PASSWORD_MIN_STRENGTH) return weakPasswordMessage(result);
  return undefined;
}

export function parseNewPassword(password: string, field = "password", userInputs: readonly string[] = []): string {
  const problem = checkPasswordPolicy(password, userInputs);
  if (problem) throw invalid(field, problem);
  return password;
}

/** Bounds on what login hashes: longer input cannot be a valid password anyway. */
export function isPlausiblePassword(password: string): boolean {
  return password.length > 0 && password.length <= PASSWORD_MAX_LENGTH;
}
