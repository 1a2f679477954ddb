/** The GraphQL edge: production refuses the dev mailbox; personal fields only for their owner. */
import { describe, expect, it } from "vitest";
import type { Caller } from "@vaultpay/kit";
import type { AuthService, UserRecord } from "./service.ts";
import { createResolvers } from "./resolvers.ts";

type Resolver = (parent: unknown, args: Record<string, unknown>, context: { caller: Caller | undefined }) => unknown;

const user: UserRecord = {
  id: "u1",
  email: "a@example.com",
  role: "CUSTOMER",
  passwordHash: "h",
  phoneEncrypted: "p",
  createdAt: new Date(),
};
const caller = (userId: string, role: Caller["role"] = "CUSTOMER"): Caller => ({
  userId,
  role,
  sessionId: "s",
  deviceId: "d",
  tokenId: "t",
});
const auth = {
  canSee: async (c: Caller | undefined, id: string) => !!c && (c.userId === id || c.role === "ADMIN"),
  verifyOtp: async () => ({ accessToken: "a", refreshToken: "r", accessTokenExpiresAt: new Date(), user }),
} as unknown as AuthService;

function field(resolvers: ReturnType<typeof createResolvers>, type: string, name: string): Resolver {
  return (resolvers[type] as Record<string, Resolver>)[name]!;
}

describe("auth resolvers", () => {
  it("answers devMailbox with FORBIDDEN when no dev mailbox is wired (production)", async () => {
    const resolvers = createResolvers({ auth, mailbox: undefined, status: async () => ({}) });
    await expect(async () =>
      field(resolvers, "Query", "devMailbox")({}, { to: "a@example.com" }, { caller: undefined }),
    ).rejects.toMatchObject({ code: "FORBIDDEN" });
  });

  it("shows a user's email to that user, an ADMIN, or the one who just verified; NOT_FOUND to anyone else", async () => {
    const resolvers = createResolvers({ auth, mailbox: undefined, status: async () => ({}) });
    const email = field(resolvers, "User", "email");
    expect(await email(user, {}, { caller: caller("u1") })).toBe("a@example.com");
    expect(await email(user, {}, { caller: caller("admin", "ADMIN") })).toBe("a@example.com");
    await expect(async () => email(user, {}, { caller: caller("u2") })).rejects.toMatchObject({ code: "NOT_FOUND" });
    await expect(async () => email(user, {}, { caller: undefined })).rejects.toMatchObject({ code: "NOT_FOUND" });
    const payload = (await field(resolvers, "Mutation", "verifyOtp")(
      {},
      { challengeId: "c", code: "123456", deviceId: "d" },
      { caller: undefined },
    )) as { user: unknown };
    expect(await email(payload.user, {}, { caller: undefined })).toBe("a@example.com");
  });
});
