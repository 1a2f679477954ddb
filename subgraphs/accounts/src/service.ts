/**
 * The accounts use cases behind the GraphQL API: each one checks the caller against the domain's
 * rules, changes state and appends its event in one transaction, and throws a typed DomainError
 * for the resolvers (mapped once to the API's codes).
 */
import { randomUUID } from "node:crypto";
import { blindIndex, decrypt, encrypt, keyIdOf, type KeyRing } from "@vaultpay/crypto";
import { DomainError, canonicalUuid } from "@vaultpay/kit";
import { formatMinorUnits } from "@vaultpay/money";
import type { Db } from "./db.ts";
import {
  ACCOUNT_NUMBER_CONTEXT,
  canListAccountsOf,
  canRevealNumber,
  canSee,
  checkCurrency,
  generateAccountNumber,
  maskAccountNumber,
  type Account,
  type AccountType,
  type Reader,
} from "./accounts.ts";
import { checkAmount, deposit } from "./ledger.ts";
import { emit } from "./events.ts";
import {
  applyMovement,
  findAccount,
  findAccountByUserAndType,
  findAccounts,
  findAccountsOfUser,
  findDepositByKey,
  findEncryptedNumber,
  insertAccount,
  insertDeposit,
  isUniqueViolation,
  lockAccount,
} from "./store.ts";

/** Number collisions are astronomically rare (10^11 numbers); a few tries, then a loud failure. */
const NUMBER_ATTEMPTS = 5;
const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:-]{8,128}$/;
/** Entity resolution batches: a page of transfers is far smaller. */
export const MAX_BATCH_IDS = 100;

export interface AccountsServiceOptions {
  db: Db;
  ring: KeyRing;
  /** Wakes the outbox relay after a commit that appended events. */
  afterCommit: () => void;
}

function notFound(): DomainError {
  return new DomainError("NOT_FOUND", "Account not found");
}

export class AccountsService {
  private readonly options: AccountsServiceOptions;

  constructor(options: AccountsServiceOptions) {
    this.options = options;
  }

  /** The account if this reader may see it; NOT_FOUND otherwise (existence is not disclosed). */
  async get(reader: Reader, id: string): Promise<Account> {
    const account = await findAccount(this.options.db, id);
    if (!account || !canSee(reader, account)) throw notFound();
    return account;
  }

  /** Many at once, in order: an account, or the NOT_FOUND error for one this reader may not see. */
  async getMany(reader: Reader, ids: readonly string[]): Promise<Array<Account | DomainError>> {
    if (ids.length > MAX_BATCH_IDS) throw new Error(`at most ${MAX_BATCH_IDS} accounts per batch`);
    const found = new Map((await findAccounts(this.options.db, ids)).map((account) => [account.id, account]));
    return ids.map((id) => {
      const account = found.get(id);
      return account && canSee(reader, account) ? account : notFound();
    });
  }

  async listOf(reader: Reader, userId: string): Promise<Account[]> {
    if (!canListAccountsOf(reader, userId)) throw new DomainError("NOT_FOUND", "User not found");
    return findAccountsOfUser(this.options.db, userId);
  }

  async open(reader: Reader, type: AccountType, currencyInput: string): Promise<Account> {
    const currency = checkCurrency(currencyInput);
    if (!currency.ok) throw new DomainError("BAD_USER_INPUT", currency.message, { field: "currency" });
    const { db, ring } = this.options;
    const conflict = () => new DomainError("CONFLICT", `You already have a ${type} account`, { field: "type" });
    if (await findAccountByUserAndType(db, reader.userId, type)) throw conflict();
    for (let attempt = 1; attempt <= NUMBER_ATTEMPTS; attempt++) {
      const number = generateAccountNumber();
      const numberEncrypted = encrypt(ring, number, ACCOUNT_NUMBER_CONTEXT);
      const numberBlindIndex = blindIndex(ring, number, ACCOUNT_NUMBER_CONTEXT);
      const numberLast4 = number.slice(-4);
      try {
        const account = await db.$transaction(async (tx) => {
          const created = await insertAccount(tx, {
            id: randomUUID(),
            userId: reader.userId,
            type,
            currency: currency.currency,
            numberEncrypted,
            numberKeyId: keyIdOf(numberEncrypted)!,
            numberBlindIndex,
            numberLast4,
          });
          await emit(tx, "account.created", {
            accountId: created.id,
            userId: created.userId,
            type: created.type,
            currency: created.currency,
            maskedNumber: maskAccountNumber(numberLast4),
            numberBlindIndex,
          });
          return created;
        });
        this.options.afterCommit();
        return account;
      } catch (error) {
        // The unique (user, type) is what really enforces one account per type, under races too.
        if (isUniqueViolation(error, "user_id") || isUniqueViolation(error, "userId")) throw conflict();
        if ((isUniqueViolation(error, "number_blind_index") || isUniqueViolation(error, "numberBlindIndex")) && attempt < NUMBER_ATTEMPTS)
          continue;
        throw error;
      }
    }
    throw new Error("unreachable: account number attempts exhausted");
  }

  /** The full number, for the owner or an ADMIN; the read is recorded (account.number.revealed) before it is returned. */
  async revealNumber(reader: Reader, account: Account): Promise<string> {
    if (!canRevealNumber(reader, account)) throw notFound();
    const { db, ring } = this.options;
    const number = await db.$transaction(async (tx) => {
      const sealed = await findEncryptedNumber(tx, account.id);
      if (!sealed) throw notFound();
      const plain = decrypt(ring, sealed, ACCOUNT_NUMBER_CONTEXT);
      await emit(tx, "account.number.revealed", { accountId: account.id, readerUserId: reader.userId });
      return plain;
    });
    this.options.afterCommit();
    return number;
  }

  /**
   * Money enters the system only here (ADMIN). The idempotency key is unique in the database: the
   * same key and body answer the same deposit, the same key with another body is a CONFLICT.
   */
  async deposit(reader: Reader, request: { accountId: string; amountMinor: bigint; idempotencyKey: string }): Promise<Account> {
    // The account id as stored (lower case): a retry that spells it in upper case is the same deposit.
    const input = { ...request, accountId: canonicalUuid(request.accountId) };
    if (reader.role !== "ADMIN") throw new DomainError("FORBIDDEN", "Only an ADMIN can deposit funds");
    const amount = checkAmount(input.amountMinor);
    if (!amount.ok) throw new DomainError("BAD_USER_INPUT", amount.message, { field: "amountMinor" });
    if (!IDEMPOTENCY_KEY.test(input.idempotencyKey)) {
      throw new DomainError("BAD_USER_INPUT", "idempotencyKey must be 8–128 characters of A–Z, a–z, 0–9 . _ : -", {
        field: "idempotencyKey",
      });
    }
    const { db } = this.options;
    const replay = async () => {
      const earlier = await findDepositByKey(db, input.idempotencyKey);
      if (!earlier) return undefined;
      if (earlier.accountId !== input.accountId || earlier.amountMinor !== input.amountMinor) {
        throw new DomainError("CONFLICT", "This idempotency key was used for a different deposit", { field: "idempotencyKey" });
      }
      return this.get(reader, earlier.accountId);
    };
    const earlier = await replay();
    if (earlier) return earlier;
    try {
      await db.$transaction(async (tx) => {
        const account = await lockAccount(tx, input.accountId);
        if (!account) throw notFound();
        const decision = deposit(account, input.amountMinor);
        if (!decision.ok) {
          throw new DomainError(
            "CONFLICT",
            `Account is ${account.status.toLowerCase()}${account.statusReason ? `: ${account.statusReason}` : ""}`,
            {
              reason: decision.reason,
            },
          );
        }
        const depositId = randomUUID();
        await insertDeposit(tx, {
          id: depositId,
          accountId: account.id,
          amountMinor: input.amountMinor,
          idempotencyKey: input.idempotencyKey,
          requestedBy: reader.userId,
        });
        await applyMovement(tx, {
          accountId: account.id,
          kind: "DEPOSIT",
          amountMinor: input.amountMinor,
          balanceAfterMinor: decision.balanceAfterMinor,
          depositId,
        });
        await emit(tx, "account.deposited", { accountId: account.id, depositId, amountMinor: formatMinorUnits(input.amountMinor) });
      });
    } catch (error) {
      // The same key raced in from another request: its deposit stands, this one answers with it.
      if (isUniqueViolation(error, "idempotency")) {
        const raced = await replay();
        if (raced) return raced;
      }
      throw error;
    }
    this.options.afterCommit();
    return this.get(reader, input.accountId);
  }
}
