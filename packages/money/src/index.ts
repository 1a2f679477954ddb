import { GraphQLError, GraphQLScalarType, Kind } from "graphql";

/**
 * Money is integer minor units (paise) end to end: BigInt in memory and in PostgreSQL (BIGINT),
 * a decimal string on the wire (JSON numbers lose precision past 2^53). Never a float.
 */
export type MinorUnits = bigint;

/** PostgreSQL BIGINT's range: a value outside it could not be stored, so it is refused at the edge. */
export const MINOR_UNITS_MAX = 2n ** 63n - 1n;
export const MINOR_UNITS_MIN = -(2n ** 63n);

const DECIMAL_INTEGER = /^-?(0|[1-9][0-9]*)$/;
/** Longer than any BIGINT; checked before BigInt() so a megabyte of digits is not parsed. */
const MAX_DIGITS = 19;

export class MoneyError extends Error {
  override name = "MoneyError";
}

/**
 * Minor units from a decimal string ("1050", "-3", "0") or a safe integer. Everything else is
 * refused: floats and exponents ("10.5", 1e3 as text), leading zeros or "+", blanks, values past
 * BIGINT, unsafe numbers (2^53 and up already lost their precision before they reached us).
 */
export function parseMinorUnits(value: unknown): MinorUnits {
  if (typeof value === "bigint") return inRange(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new MoneyError("minor units must be an integer (as a decimal string, or a safe integer)");
    return BigInt(value);
  }
  if (typeof value !== "string") throw new MoneyError("minor units must be a decimal string");
  const digits = value.startsWith("-") ? value.length - 1 : value.length;
  if (!DECIMAL_INTEGER.test(value) || digits > MAX_DIGITS)
    throw new MoneyError('minor units must be an integer decimal string, e.g. "1050"');
  if (value === "-0") throw new MoneyError("minor units must not be negative zero");
  return inRange(BigInt(value));
}

function inRange(value: bigint): MinorUnits {
  if (value > MINOR_UNITS_MAX || value < MINOR_UNITS_MIN) throw new MoneyError("minor units out of range");
  return value;
}

/** The wire form: a decimal string, the inverse of parseMinorUnits. */
export function formatMinorUnits(value: MinorUnits): string {
  return inRange(value).toString();
}

/**
 * Minor units as a major-unit decimal for people ("123456" paise → "1234.56"); display only,
 * the amount itself never leaves integers.
 */
export function formatMajorUnits(value: MinorUnits, fractionDigits = 2): string {
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(fractionDigits + 1, "0");
  const major = fractionDigits === 0 ? digits : `${digits.slice(0, -fractionDigits)}.${digits.slice(-fractionDigits)}`;
  return negative ? `-${major}` : major;
}

function badInput(error: unknown): GraphQLError {
  return new GraphQLError(`MinorUnits: ${error instanceof Error ? error.message : "invalid value"}`, {
    extensions: { code: "BAD_USER_INPUT" },
  });
}

/**
 * `scalar MinorUnits`: serialized as a decimal string; input as a decimal string or a safe integer
 * (variables or literals); anything else is BAD_USER_INPUT. Resolvers receive a bigint.
 */
export const MinorUnitsScalar = new GraphQLScalarType<MinorUnits, string>({
  name: "MinorUnits",
  description: "Integer amount in minor units (paise), serialized as a decimal string.",
  serialize(value) {
    try {
      return formatMinorUnits(parseMinorUnits(value));
    } catch (error) {
      // An output value we cannot represent is our bug, not the client's: no BAD_USER_INPUT here.
      throw new GraphQLError(`MinorUnits cannot represent ${typeof value}: ${(error as Error).message}`);
    }
  },
  parseValue(value) {
    try {
      return parseMinorUnits(value);
    } catch (error) {
      throw badInput(error);
    }
  },
  parseLiteral(ast) {
    try {
      if (ast.kind === Kind.STRING) return parseMinorUnits(ast.value);
      // An Int literal may have any number of digits; only a safe integer is accepted, as for variables.
      if (ast.kind === Kind.INT) return parseMinorUnits(Number(ast.value));
      throw new MoneyError("minor units must be a decimal string or an integer");
    } catch (error) {
      throw badInput(error);
    }
  },
});
export * from "./account-number.ts";
