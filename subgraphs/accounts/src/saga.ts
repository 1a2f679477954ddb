/**
 * The saga steps of a batch of commands, decided in memory on state read once (pure: no storage,
 * no transport). The consumer locks the batch's transfers and accounts, loads their balances,
 * decisions and journal rows, lets a SagaBook decide each command in order exactly as one-by-one
 * handling would, then writes what changed in a few set-based statements. A step of a transfer is
 * decided once: a repeated command (even re-published with a new event id, even in the same
 * batch) gets the first answer again.
 */
import type { Account } from "./accounts.ts";
import { credit, debit, refund, type Decision, type TransferHistory } from "./ledger.ts";

export type SagaStep = "DEBIT" | "CREDIT" | "REFUND";

/** One saga command, as the ledger sees it. */
export interface StepCommand {
  transferId: string;
  step: SagaStep;
  accountId: string;
  amountMinor: bigint;
  /** For a debit: whose account it must be, and the transfer's currency. */
  userId?: string;
  currency?: string;
  /** For a debit: the destination, recorded with the decision (the only account a passed verdict credits). */
  toAccountId?: string;
}

export interface SagaDecisionRecord {
  accountId: string;
  amountMinor: bigint;
  /** Null: applied. */
  rejection: string | null;
  /** A debit's destination; null on other steps and on debits recorded before it was kept. */
  toAccountId: string | null;
}

/** A journal row of a transfer: amounts signed (DEBIT negative), with its account's currency. */
export interface TransferJournalRow {
  transferId: string;
  kind: SagaStep;
  accountId: string;
  amountMinor: bigint;
  currency: string;
}

/** A movement decided in this batch: a journal row, and the balance it leaves. */
export interface StepMovement {
  transferId: string;
  kind: SagaStep;
  accountId: string;
  /** Signed: DEBIT negative. */
  amountMinor: bigint;
  balanceAfterMinor: bigint;
}

export interface StepAnswer {
  decision: SagaDecisionRecord;
  /** A decision recorded earlier for the same step with another account or amount (answered as first decided). */
  repeatedWithOtherBody: boolean;
}

type History = TransferHistory & { debitAccountId?: string };

/**
 * The credit a passed fraud verdict calls for, from the transfer's debit decision: its amount, to
 * the destination its debit command named. Undefined when that debit recorded no destination
 * (decided before destinations were kept): the saga's deadline decides then.
 */
export function creditOnVerdict(debit: SagaDecisionRecord & { transferId: string }): StepCommand | undefined {
  if (debit.toAccountId === null) return undefined;
  return { transferId: debit.transferId, step: "CREDIT", accountId: debit.toAccountId, amountMinor: debit.amountMinor };
}

export class SagaBook {
  private readonly accounts: Map<string, Account>;
  private readonly loadedBalances = new Map<string, bigint>();
  private readonly decisions = new Map<string, SagaDecisionRecord>();
  private readonly journal = new Map<string, TransferJournalRow[]>();
  private readonly newDecisions: Array<SagaDecisionRecord & { transferId: string; step: SagaStep }> = [];
  private readonly movements: StepMovement[] = [];

  constructor(state: {
    /** The batch's accounts, locked by the caller until its transaction ends. */
    accounts: readonly Account[];
    decisions: ReadonlyArray<SagaDecisionRecord & { transferId: string; step: SagaStep }>;
    journal: readonly TransferJournalRow[];
  }) {
    this.accounts = new Map(state.accounts.map((account) => [account.id, { ...account }]));
    for (const account of state.accounts) this.loadedBalances.set(account.id, account.balanceMinor);
    for (const { transferId, step, ...decision } of state.decisions) this.decisions.set(key(transferId, step), decision);
    for (const row of state.journal) this.rowsOf(row.transferId).push(row);
  }

  /** Decides one command (or finds its earlier decision), applying an accepted step to the state in memory. */
  decide(command: StepCommand): StepAnswer {
    const earlier = this.decisions.get(key(command.transferId, command.step));
    if (earlier) {
      return {
        decision: earlier,
        repeatedWithOtherBody: earlier.accountId !== command.accountId || earlier.amountMinor !== command.amountMinor,
      };
    }
    const account = this.accounts.get(command.accountId);
    const outcome = this.rule(command, account);
    const decision: SagaDecisionRecord = {
      accountId: command.accountId,
      amountMinor: command.amountMinor,
      rejection: outcome.ok ? null : outcome.reason,
      toAccountId: command.step === "DEBIT" ? (command.toAccountId ?? null) : null,
    };
    if (outcome.ok) {
      // rule() accepts only a step on an account it was given.
      const applied = account!;
      const signedMinor = command.step === "DEBIT" ? -command.amountMinor : command.amountMinor;
      applied.balanceMinor = outcome.balanceAfterMinor;
      this.rowsOf(command.transferId).push({
        transferId: command.transferId,
        kind: command.step,
        accountId: applied.id,
        amountMinor: signedMinor,
        currency: applied.currency,
      });
      this.movements.push({
        transferId: command.transferId,
        kind: command.step,
        accountId: applied.id,
        amountMinor: signedMinor,
        balanceAfterMinor: outcome.balanceAfterMinor,
      });
    }
    this.decisions.set(key(command.transferId, command.step), decision);
    this.newDecisions.push({ ...decision, transferId: command.transferId, step: command.step });
    return { decision, repeatedWithOtherBody: false };
  }

  /** What the batch changed: decisions, journal rows in order, and each touched account's balance before and after. */
  changes() {
    const balances = [...new Set(this.movements.map((movement) => movement.accountId))].map((accountId) => ({
      accountId,
      beforeMinor: this.loadedBalances.get(accountId)!,
      afterMinor: this.accounts.get(accountId)!.balanceMinor,
    }));
    return { decisions: [...this.newDecisions], movements: [...this.movements], balances };
  }

  private rule(command: StepCommand, account: Account | undefined): Decision<string> {
    switch (command.step) {
      case "DEBIT":
        // The saga gave up on this debit and asked for a refund, which was decided first (a late
        // or redelivered debit): never take money for a transfer that is being unwound.
        if (this.decisions.has(key(command.transferId, "REFUND"))) return { ok: false, reason: "TRANSFER_CANCELLED" };
        return debit(account, { amountMinor: command.amountMinor, currency: command.currency ?? "", userId: command.userId ?? "" });
      case "CREDIT":
        return credit(account, command.amountMinor, this.history(command.transferId));
      case "REFUND": {
        const history = this.history(command.transferId);
        // Only the account this transfer debited gets the money back.
        if (!account || history.debitAccountId !== account.id) return { ok: false, reason: "DEBIT_NOT_FOUND" };
        return refund(account, command.amountMinor, history);
      }
    }
  }

  /** What the journal (and this batch) says the transfer did. */
  private history(transferId: string): History {
    const rows = this.journal.get(transferId) ?? [];
    const debitRow = rows.find((row) => row.kind === "DEBIT");
    return {
      debit: debitRow ? { amountMinor: -debitRow.amountMinor, currency: debitRow.currency } : undefined,
      debitAccountId: debitRow?.accountId,
      credited: rows.some((row) => row.kind === "CREDIT"),
      refunded: rows.some((row) => row.kind === "REFUND"),
    };
  }

  private rowsOf(transferId: string): TransferJournalRow[] {
    let rows = this.journal.get(transferId);
    if (!rows) this.journal.set(transferId, (rows = []));
    return rows;
  }
}

function key(transferId: string, step: SagaStep): string {
  return `${transferId}\u0000${step}`;
}
