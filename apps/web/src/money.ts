/**
 * Money as the API carries it: integer paise in a decimal string. Rupees typed by a person are
 * turned into paise by string arithmetic and amounts are shown with BigInt, so no amount ever
 * passes through a float (0.1 + 0.2 is not 0.3, and 2^53 paise is not a limit we want).
 */

/** The largest amount the form accepts: ₹1,00,00,00,000 (a typo guard, far above any limit). */
export const MAX_AMOUNT_PAISE = 100_000_000_000n;

export type RupeesParse = { ok: true; paise: string } | { ok: false; reason: string };

/**
 * "1,234.5" → "123450". Accepts digits with optional en-IN or plain grouping commas, at most two
 * decimals, no sign, no exponent. The result is a positive integer string.
 */
export function rupeesToPaise(input: string): RupeesParse {
  const text = input.trim().replace(/^₹\s*/, "");
  if (text === "") return { ok: false, reason: "Enter an amount in rupees, for example 250 or 250.50." };
  const match = /^(\d{1,3}(?:,\d{2,3})*|\d+)(?:\.(\d{0,2}))?$/.exec(text);
  if (!match) {
    return /\.\d{3,}$/.test(text)
      ? { ok: false, reason: "Amounts have at most two digits after the point (paise)." }
      : { ok: false, reason: "Enter the amount in digits, for example 250 or 1,250.50." };
  }
  const rupees = match[1]!.replaceAll(",", "");
  const paiseDigits = (match[2] ?? "").padEnd(2, "0");
  const paise = BigInt(rupees) * 100n + BigInt(paiseDigits);
  if (paise <= 0n) return { ok: false, reason: "The amount must be more than ₹0." };
  if (paise > MAX_AMOUNT_PAISE) return { ok: false, reason: "That amount is larger than this app accepts." };
  return { ok: true, paise: paise.toString() };
}

const rupeeGrouping = new Intl.NumberFormat("en-IN", { maximumFractionDigits: 0 });

/** "12345678" (paise) → "₹1,23,456.78"; negative amounts keep their sign in front of ₹. */
export function formatPaise(minor: string | bigint, currency = "INR"): string {
  const value = typeof minor === "bigint" ? minor : BigInt(minor);
  const negative = value < 0n;
  const absolute = negative ? -value : value;
  const rupees = rupeeGrouping.format(absolute / 100n);
  const paise = (absolute % 100n).toString().padStart(2, "0");
  const symbol = currency === "INR" ? "₹" : `${currency} `;
  return `${negative ? "-" : ""}${symbol}${rupees}.${paise}`;
}
