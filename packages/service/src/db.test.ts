import { describe, expect, it } from "vitest";
import { statementName } from "./db.ts";

describe("statementName", () => {
  it("names a service's own statement, the same name for the same text, another for another text", () => {
    const claim = "UPDATE outbox_event SET published_at = now() WHERE seq = ANY($1::bigint[])";
    const name = statementName(claim);
    expect(name).toMatch(/^vp_[\w-]{24}$/);
    expect(statementName(`${claim}`)).toBe(name);
    expect(statementName(`${claim} RETURNING seq`)).not.toBe(name);
  });

  it("leaves Prisma's own queries unnamed (their text varies with their arguments)", () => {
    expect(statementName(`SELECT "public"."account"."id" FROM "public"."account" WHERE "public"."account"."id" IN ($1,$2,$3)`)).toBe("");
  });

  it("stops naming new texts past its bound, and keeps the names it gave", () => {
    const first = statementName("SELECT 1 AS bound_first");
    for (let n = 0; n < 600; n++) statementName(`SELECT ${n} AS bound_fill`);
    expect(statementName("SELECT 1 AS bound_after")).toBe("");
    expect(statementName("SELECT 1 AS bound_first")).toBe(first);
  });
});
