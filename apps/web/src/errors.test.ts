import { describe, expect, it } from "vitest";
import { ApiError, endsSession, isRetryable, sentenceFor } from "./errors.ts";

// The public codes of packages/kit/src/errors.ts, plus INTERNAL and the app's own two.
const API_CODES = [
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "BAD_USER_INPUT",
  "NOT_FOUND",
  "RATE_LIMITED",
  "CONFLICT",
  "INSUFFICIENT_FUNDS",
  "UNAVAILABLE",
  "INTERNAL",
  "GRAPHQL_PARSE_FAILED",
  "GRAPHQL_VALIDATION_FAILED",
  "BAD_REQUEST",
];

describe("error sentences", () => {
  it.each(API_CODES)("%s reads as a sentence, never as the code or the server's words", (code) => {
    const sentence = sentenceFor(new ApiError(code, "raw server text"));
    if (code === "BAD_USER_INPUT") return expect(sentence).toBe("raw server text.");
    expect(sentence).toMatch(/^[A-Z].*\.$/);
    expect(sentence).not.toContain(code);
    expect(sentence).not.toContain("raw server text");
  });

  it("says which errors a retry can help and which end the session", () => {
    expect(sentenceFor(new ApiError("INSUFFICIENT_FUNDS", "x"))).toBe("There is not enough money in this account for that transfer.");
    expect(isRetryable(new ApiError("RATE_LIMITED", "x", 30))).toBe(true);
    expect(isRetryable(new ApiError("UNAVAILABLE", "x", 2))).toBe(true);
    expect(isRetryable(new ApiError("INSUFFICIENT_FUNDS", "x"))).toBe(false);
    expect(endsSession(new ApiError("SESSION_EXPIRED", "x"))).toBe(true);
    expect(sentenceFor(new Error("boom"))).toMatch(/went wrong on our side/);
  });
});
