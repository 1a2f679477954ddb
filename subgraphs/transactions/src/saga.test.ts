/** The saga's rules on an in-memory store (a pure unit: the real store is covered end to end). */
import { describe, expect, it } from "vitest";
import { TEXT_LIMITS, createEvent, type Event, type EventData, type EventType } from "@vaultpay/events";
import { Saga, type OverdueTransfer, type SagaStore, type TransferPatch, type TransferState } from "./saga.ts";
import { assertTransition, mayStillBeQueued, onStepTimeout, stepDeadline } from "./transfers.ts";

const timings = { stepTimeoutMs: 1_000, maxStepAttempts: 3 };
const context = { correlationId: "corr-1", actor: {} };

class MemoryStore implements SagaStore {
  readonly emitted: Array<{ type: string; data: unknown }> = [];
  readonly history: string[] = [];
  transfer: OverdueTransfer;
  /** Overdue from the start: the first attempt's deadline is the transfer's creation plus a step timeout. */
  constructor(transfer: TransferState & { stepDeadlineAt?: Date }) {
    this.transfer = { stepDeadlineAt: new Date(transfer.createdAt.getTime() + timings.stepTimeoutMs), ...transfer };
  }
  async lockTransfer(id: string) {
    return id === this.transfer.id ? { ...this.transfer } : null;
  }
  async update(_id: string, patch: TransferPatch) {
    this.transfer = {
      ...this.transfer,
      ...patch,
      stepDeadlineAt: patch.stepDeadlineAt ?? this.transfer.stepDeadlineAt,
      status: patch.status ?? this.transfer.status,
      failureReason: patch.failureReason === undefined ? this.transfer.failureReason : patch.failureReason,
    };
  }
  async recordStatus(_id: string, status: string) {
    this.history.push(status);
  }
  async emit<T extends EventType>(type: T, data: EventData<T>) {
    // Built as the real store builds it: an event its schema refuses throws here too.
    createEvent(type, data, context);
    this.emitted.push({ type, data });
  }
  types() {
    return this.emitted.map((e) => e.type);
  }
}

function pending(): TransferState {
  return {
    id: "t1",
    userId: "u1",
    fromAccountId: "a1",
    toAccountId: "a2",
    amountMinor: 2_500n,
    currency: "INR",
    status: "PENDING",
    step: "DEBIT",
    stepAttempts: 1,
    failureReason: null,
    requestDeviceId: "d1",
    requestDeviceProven: false,
    sessionDeviceId: "d1",
    correlationId: "corr-1",
    createdAt: new Date("2026-11-25T10:00:00Z"),
  };
}

const step = { transferId: "t1", accountId: "a1", amountMinor: "2500" };
const event = <T extends EventType>(type: T, data: EventData<T>): Event => createEvent(type, data, context) as Event;

describe("saga", () => {
  it("walks debit, fraud, credit to COMPLETED: a passed verdict is accounts' to credit, so no credit command", async () => {
    const store = new MemoryStore(pending());
    const saga = new Saga(timings);
    await saga.handle(store, event("account.debited", step));
    expect(store.transfer).toMatchObject({ status: "DEBITED", step: "FRAUD" });
    await saga.handle(
      store,
      event("fraud.check.completed", { transferId: "t1", passed: true, riskScore: 10, reasons: [], checkedAt: new Date().toISOString() }),
    );
    // Nothing to do here: the saga waits at FRAUD (its deadline still runs) for accounts' credit.
    expect(store.transfer).toMatchObject({ status: "DEBITED", step: "FRAUD" });
    await saga.handle(store, event("account.credited", { ...step, accountId: "a2" }));
    expect(store.transfer).toMatchObject({ status: "COMPLETED", step: "NONE" });
    expect(store.history).toEqual(["DEBITED", "COMPLETED"]);
    expect(store.types()).toEqual([
      "transaction.status.changed",
      "fraud.check.requested",
      "transaction.status.changed",
      "transaction.completed",
    ]);
  });

  it("completes a transfer waiting at CREDIT (a command from before verdicts were credited by accounts)", async () => {
    const store = new MemoryStore({ ...pending(), status: "DEBITED", step: "CREDIT" });
    await new Saga(timings).handle(store, event("account.credited", { ...step, accountId: "a2" }));
    expect(store.transfer).toMatchObject({ status: "COMPLETED", step: "NONE" });
  });

  it("unwinds a credit accounts refused on the verdict: refund with the reason, then FAILED", async () => {
    const store = new MemoryStore({ ...pending(), status: "DEBITED", step: "FRAUD" });
    const saga = new Saga(timings);
    await saga.handle(store, event("account.credit.rejected", { transferId: "t1", accountId: "a2", reason: "ACCOUNT_NOT_ACTIVE" }));
    expect(store.transfer).toMatchObject({
      step: "REFUND",
      failureReason: "The destination account refused the credit (ACCOUNT_NOT_ACTIVE)",
    });
    expect(store.types()).toEqual(["transaction.refund.requested"]);
    await saga.handle(store, event("account.refunded", step));
    expect(store.transfer).toMatchObject({ status: "FAILED", step: "NONE" });
  });

  it("ignores a credit answer before the debit was seen", async () => {
    const store = new MemoryStore(pending());
    await new Saga(timings).handle(store, event("account.credited", { ...step, accountId: "a2" }));
    expect(store.transfer).toMatchObject({ status: "PENDING", step: "DEBIT" });
    expect(store.emitted).toEqual([]);
  });

  it("ignores late and repeated answers for steps already left", async () => {
    const store = new MemoryStore(pending());
    const saga = new Saga(timings);
    await saga.handle(store, event("account.debited", step));
    const emittedBefore = store.emitted.length;
    await saga.handle(store, event("account.debited", step));
    await saga.handle(store, event("account.debit.rejected", { transferId: "t1", accountId: "a1", reason: "INSUFFICIENT_FUNDS" }));
    expect(store.emitted.length).toBe(emittedBefore);
    expect(store.transfer.status).toBe("DEBITED");
  });

  it("refunds a failed fraud check with its reasons, then FAILED", async () => {
    const store = new MemoryStore({ ...pending(), status: "DEBITED", step: "FRAUD" });
    const saga = new Saga(timings);
    const verdict = {
      transferId: "t1",
      passed: false,
      riskScore: 80,
      reasons: ["Amount 900 is over 5x the median of 100"],
      customerReasons: ["a", "b"],
    };
    await saga.handle(store, event("fraud.check.completed", { ...verdict, checkedAt: new Date().toISOString() }));
    // The owner reads the plain words, never the engine's figures or score.
    expect(store.transfer).toMatchObject({ step: "REFUND", failureReason: "The fraud check stopped this transfer: a; b" });
    expect(store.types()).toEqual(["transaction.refund.requested"]);
    await saga.handle(store, event("account.refunded", step));
    expect(store.transfer).toMatchObject({ status: "FAILED", step: "NONE" });
  });

  it("lets a credit that wins the race with a refund complete the transfer", async () => {
    const store = new MemoryStore({
      ...pending(),
      status: "DEBITED",
      step: "REFUND",
      failureReason: "The credit did not complete in time",
    });
    await new Saga(timings).handle(
      store,
      event("account.refund.rejected", { transferId: "t1", accountId: "a1", reason: "ALREADY_CREDITED" }),
    );
    expect(store.transfer).toMatchObject({ status: "COMPLETED", step: "NONE", failureReason: null });
  });

  it("resends an overdue step's command, then compensates; a refund is never given up", async () => {
    const store = new MemoryStore(pending());
    const saga = new Saga(timings);
    await saga.timeout(store, store.transfer);
    await saga.timeout(store, store.transfer);
    expect(store.transfer).toMatchObject({ step: "DEBIT", stepAttempts: 3 });
    expect(store.types()).toEqual(["transaction.initiated", "transaction.initiated"]);
    await saga.timeout(store, store.transfer);
    expect(store.transfer).toMatchObject({ status: "PENDING", step: "REFUND", failureReason: "The debit did not complete in time" });
    for (let i = 0; i < 10; i++) await saga.timeout(store, store.transfer);
    expect(store.transfer.step).toBe("REFUND");
    // The debit never happened: accounts refuses the refund, and nothing moved.
    await saga.handle(store, event("account.refund.rejected", { transferId: "t1", accountId: "a1", reason: "DEBIT_NOT_FOUND" }));
    expect(store.transfer).toMatchObject({ status: "REJECTED", step: "NONE" });
  });

  it("does not resend a command the saga's queues may still hold, except by the last attempt, and gives up after the same attempts", async () => {
    const four = { ...timings, maxStepAttempts: 4 };
    const start = pending().createdAt.getTime();
    let now = new Date(start);
    const outcomes: string[] = [];
    const saga = new Saga(four, { now: () => now, onDeadline: (step, outcome) => outcomes.push(`${step} ${outcome}`) });
    const store = new MemoryStore(pending());
    const asked: string[] = [];
    const queued = (waitedMs: number) => (step: string, since: Date) => {
      asked.push(`${step} since ${since.getTime() - start}`);
      return { waitedMs, sampledAt: now };
    };
    // 1.5 s into the first attempt (deadline 1 s), the debit's queues have held messages 0.6 s
    // since it began: the command, stored within its first second, may be among them.
    now = new Date(start + 1_500);
    await saga.timeout(store, store.transfer, queued(600));
    expect(store.types()).toEqual([]);
    expect(store.transfer).toMatchObject({ step: "DEBIT", stepAttempts: 2, stepDeadlineAt: new Date(start + 3_500) });
    // 2.5 s into the second attempt, the queues held nothing that long: the command was lost.
    now = new Date(start + 4_000);
    await saga.timeout(store, store.transfer, queued(400));
    expect(store.types()).toEqual(["transaction.initiated"]);
    expect(store.transfer).toMatchObject({ stepAttempts: 3, stepDeadlineAt: new Date(start + 8_000) });
    // The last attempt sends however long the queues are.
    now = new Date(start + 8_500);
    await saga.timeout(store, store.transfer, queued(60_000));
    expect(store.types()).toEqual(["transaction.initiated", "transaction.initiated"]);
    expect(store.transfer).toMatchObject({ stepAttempts: 4, stepDeadlineAt: new Date(start + 16_500) });
    // Its deadline: given up (and refunded).
    now = new Date(start + 17_000);
    await saga.timeout(store, store.transfer, queued(60_000));
    expect(store.transfer).toMatchObject({ status: "PENDING", step: "REFUND", stepAttempts: 1 });
    expect(store.types()).toEqual(["transaction.initiated", "transaction.initiated", "transaction.refund.requested"]);
    expect(outcomes).toEqual(["DEBIT queued", "DEBIT resent", "DEBIT resent", "DEBIT given_up"]);
    // Asked about the debit's queues since each attempt began, but not by the last one, nor once given up.
    expect(asked).toEqual(["DEBIT since 0", "DEBIT since 1500"]);
  });

  it("ends a transfer whose refund accounts refuses for another reason, and raises it", async () => {
    const anomalies: string[] = [];
    const store = new MemoryStore({ ...pending(), status: "DEBITED", step: "REFUND" });
    await new Saga(timings, { onAnomaly: (_id, what) => anomalies.push(what) }).handle(
      store,
      event("account.refund.rejected", { transferId: "t1", accountId: "a1", reason: "AMOUNT_MISMATCH" }),
    );
    expect(store.transfer).toMatchObject({
      status: "FAILED",
      step: "NONE",
      failureReason: "Refund refused by accounts (AMOUNT_MISMATCH); needs an operator",
    });
    expect(anomalies).toEqual(["refund refused: AMOUNT_MISMATCH"]);
  });

  it("refunds at once on the largest verdict the event allows, its reason bounded where built", async () => {
    const store = new MemoryStore({ ...pending(), status: "DEBITED", step: "FRAUD" });
    const line = (i: number) => `reason ${i} ${"x".repeat(TEXT_LIMITS.ruleReasonChars - 10)}`;
    const reasons = Array.from({ length: TEXT_LIMITS.ruleReasons }, (_, i) => line(i));
    const verdict = { transferId: "t1", passed: false, riskScore: 100, reasons, customerReasons: reasons };
    await new Saga(timings).handle(store, event("fraud.check.completed", { ...verdict, checkedAt: new Date().toISOString() }));
    // The refund command (validated by the store like the real outbox) went out with the verdict's
    // reason, not after a step timeout.
    expect(store.types()).toEqual(["transaction.refund.requested"]);
    expect(store.transfer.failureReason).toHaveLength(TEXT_LIMITS.reasonChars);
    expect(store.transfer.failureReason).toMatch(/^The fraud check stopped this transfer: reason 0 x+.*…$/);
    await new Saga(timings).handle(store, event("account.refunded", step));
    expect(store.types()).toEqual(["transaction.refund.requested", "transaction.status.changed", "transaction.failed"]);
  });

  it("bounds a stored reason longer than the event allows when it resends the refund", async () => {
    const store = new MemoryStore({ ...pending(), status: "DEBITED", step: "REFUND", failureReason: "y".repeat(2_000) });
    await new Saga(timings).timeout(store, store.transfer);
    expect((store.emitted[0]!.data as { reason: string }).reason).toHaveLength(TEXT_LIMITS.reasonChars);
  });
});

describe("transfer rules", () => {
  it("only moves statuses forward", () => {
    expect(() => assertTransition("PENDING", "DEBITED")).not.toThrow();
    expect(() => assertTransition("DEBITED", "PENDING")).toThrow(/illegal/);
    expect(() => assertTransition("COMPLETED", "FAILED")).toThrow(/illegal/);
  });

  it("backs off step deadlines, capped at 8x", () => {
    const now = new Date(0);
    expect([1, 2, 3, 4, 5, 9].map((attempt) => stepDeadline(now, attempt, timings).getTime())).toEqual([
      1_000, 2_000, 4_000, 8_000, 8_000, 8_000,
    ]);
    expect(onStepTimeout("CREDIT", 3, timings)).toBe("compensate");
    expect(onStepTimeout("REFUND", 99, timings)).toBe("retry");
  });

  it("takes a step's command for queued while the queues have waited as long as its attempt, less a second", () => {
    // The third attempt (4 s) ends at 10 s: it started at 6 s; at 11 s it is 5 s old.
    const step = { name: "FRAUD" as const, deadline: new Date(10_000), attempts: 3 };
    const at = new Date(11_000);
    const since =
      (waitedMs: number, sampledAt = at) =>
      (name: string, from: Date) =>
        name === "FRAUD" && from.getTime() === 6_000 ? { waitedMs, sampledAt } : undefined;
    expect(mayStillBeQueued(step, since(4_000), timings)).toBe(true);
    expect(mayStillBeQueued(step, since(3_999), timings)).toBe(false);
    // Sampled half a second earlier: the attempt was half a second younger then.
    expect(mayStillBeQueued(step, since(3_500, new Date(10_500)), timings)).toBe(true);
    expect(mayStillBeQueued(step, since(0, new Date(6_500)), timings)).toBe(false);
    expect(mayStillBeQueued(step, () => undefined, timings)).toBe(false);
  });
});
