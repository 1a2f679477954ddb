import { graphql, buildSchema, type GraphQLError, parseValue } from "graphql";
import { describe, expect, it } from "vitest";
import { MINOR_UNITS_MAX, MinorUnitsScalar, MoneyError, formatMajorUnits, formatMinorUnits, parseMinorUnits } from "./index.ts";

describe("parseMinorUnits", () => {
  it("accepts integer decimal strings, safe integers and bigints", () => {
    expect(parseMinorUnits("0")).toBe(0n);
    expect(parseMinorUnits("1050")).toBe(1050n);
    expect(parseMinorUnits("-3")).toBe(-3n);
    expect(parseMinorUnits(42)).toBe(42n);
    expect(parseMinorUnits(Number.MAX_SAFE_INTEGER)).toBe(9007199254740991n);
    expect(parseMinorUnits("9223372036854775807")).toBe(MINOR_UNITS_MAX);
    expect(parseMinorUnits("-9223372036854775808")).toBe(-(2n ** 63n));
  });

  it.each([
    ["a float string", "10.5"],
    ["a float number", 10.5],
    ["an exponent", "1e3"],
    ["a leading zero", "010"],
    ["a plus sign", "+5"],
    ["negative zero", "-0"],
    ["blank", ""],
    ["spaces", " 5"],
    ["non-numeric", "ten"],
    ["hex", "0x10"],
    ["2^63", "9223372036854775808"],
    ["below -2^63", "-9223372036854775809"],
    ["a huge number of digits", "1".repeat(1000)],
    ["an unsafe number", 2 ** 53],
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["a boolean", true],
    ["null", null],
    ["an object", { minor: "5" }],
  ])("refuses %s", (_what, value) => {
    expect(() => parseMinorUnits(value)).toThrow(MoneyError);
  });

  it("formats back to the same decimal string, and for people in major units", () => {
    for (const text of ["0", "1", "-1", "123456789012345678", "9223372036854775807"])
      expect(formatMinorUnits(parseMinorUnits(text))).toBe(text);
    expect(formatMajorUnits(123456n)).toBe("1234.56");
    expect(formatMajorUnits(5n)).toBe("0.05");
    expect(formatMajorUnits(-5n)).toBe("-0.05");
    expect(formatMajorUnits(7n, 0)).toBe("7");
    expect(() => formatMinorUnits(2n ** 63n)).toThrow(MoneyError);
  });
});

describe("MinorUnits scalar", () => {
  const schema = buildSchema(`scalar MinorUnits type Query { echo(amount: MinorUnits!): MinorUnits! big: MinorUnits! }`);
  Object.assign(schema.getType("MinorUnits")!, {
    serialize: MinorUnitsScalar.serialize,
    parseValue: MinorUnitsScalar.parseValue,
    parseLiteral: MinorUnitsScalar.parseLiteral,
  });
  const received: unknown[] = [];
  const rootValue = {
    echo: ({ amount }: { amount: bigint }) => {
      received.push(amount);
      return amount;
    },
    big: () => 2n ** 62n,
  };
  const run = (source: string, variableValues?: Record<string, unknown>) => graphql({ schema, source, rootValue, variableValues });

  it("gives resolvers a bigint and serializes as a decimal string", async () => {
    expect(await run(`{ echo(amount: "1050") big }`)).toEqual({ data: { echo: "1050", big: "4611686018427387904" } });
    expect(await run(`{ echo(amount: 7) }`)).toEqual({ data: { echo: "7" } });
    expect(await run(`query ($a: MinorUnits!) { echo(amount: $a) }`, { a: "99" })).toEqual({ data: { echo: "99" } });
    expect(await run(`query ($a: MinorUnits!) { echo(amount: $a) }`, { a: 99 })).toEqual({ data: { echo: "99" } });
    expect(received.every((value) => typeof value === "bigint")).toBe(true);
  });

  it.each([
    ["a float literal", `{ echo(amount: 10.5) }`, undefined],
    ["an unsafe int literal", `{ echo(amount: 9007199254740993) }`, undefined],
    ["a float variable", `query ($a: MinorUnits!) { echo(amount: $a) }`, { a: 10.5 }],
    ["a float string variable", `query ($a: MinorUnits!) { echo(amount: $a) }`, { a: "10.50" }],
    ["a too large variable", `query ($a: MinorUnits!) { echo(amount: $a) }`, { a: "9223372036854775808" }],
    ["a non-numeric variable", `query ($a: MinorUnits!) { echo(amount: $a) }`, { a: "lots" }],
    ["a boolean literal", `{ echo(amount: true) }`, undefined],
  ])("answers %s with BAD_USER_INPUT", async (_what, source, variables) => {
    const result = await run(source, variables);
    expect(result.data).toBeUndefined();
    const error = result.errors?.[0] as GraphQLError;
    // Literal errors surface through validation; the scalar's own error carries the code.
    expect((error.originalError as GraphQLError | undefined)?.extensions?.code ?? error.extensions.code).toBe("BAD_USER_INPUT");
  });

  it("parses a literal AST directly", () => {
    expect(MinorUnitsScalar.parseLiteral(parseValue(`"12"`))).toBe(12n);
    expect(() => MinorUnitsScalar.parseLiteral(parseValue(`1.5`))).toThrow(/MinorUnits/);
  });
});
