/**
 * Account numbers, as every service sees them: 12 digits whose last is a Luhn check digit, so a
 * mistyped number is caught before any lookup. Generated and stored (encrypted) by accounts; looked
 * up by its blind index elsewhere.
 */
export const ACCOUNT_NUMBER_DIGITS = 12;
/** Associated data of the number's ciphertext and the context of its blind index. */
export const ACCOUNT_NUMBER_CONTEXT = "account.number";

/** The Luhn check digit for a string of digits (the payload, without its check digit). */
export function luhnCheckDigit(payload: string): number {
  let sum = 0;
  // From the right, every second digit of the payload is doubled (it will sit left of the check digit).
  for (let i = 0; i < payload.length; i++) {
    let digit = payload.charCodeAt(payload.length - 1 - i) - 48;
    if (i % 2 === 0) {
      digit *= 2;
      if (digit > 9) digit -= 9;
    }
    sum += digit;
  }
  return (10 - (sum % 10)) % 10;
}

/** A 12-digit number whose last digit checks the others: catches every single-digit typo and most swaps. */
export function isValidAccountNumber(value: string): boolean {
  if (!new RegExp(`^[0-9]{${ACCOUNT_NUMBER_DIGITS}}$`).test(value)) return false;
  return luhnCheckDigit(value.slice(0, -1)) === Number(value.at(-1));
}

/** What a person types (spaces, dashes) reduced to the digits the number is made of. */
export function normalizeAccountNumber(input: string): string {
  return input.replace(/[\s-]/g, "");
}
