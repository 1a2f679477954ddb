import { describe, expect, it } from "vitest";
import type { Decision, Movement, MovementKind, OutboxRow, TransferEvidence, TransferRecord, TransferStatus } from "./model.ts";
import { RECONCILIATION_REFUND_REASON, judgeLater, judgeOutbox, judgeTransfer, processedEventKeepMs, prunableOutboxIds } from "./rules.ts";

const NOW = new Date("2026-12-01T12:00:00Z");
const clock = { now: NOW, graceMs: 5 * 60_000 };
const OLD = new Date(NOW.getTime() - 10 * 60_000);
const RECENT = new Date(NOW.getTime() - 60_000);
const FROM = "acc-from";
const TO = "acc-to";

function transfer(status: TransferStatus, updatedAt = OLD): TransferRecord {
  return { id: "t1", status, fromAccountId: FROM, toAccountId: TO, amountMinor: 100n, updatedAt };
}

function move(kind: MovementKind, overrides: Partial<Movement> = {}): Movement {
  return { transferId: "t1", kind, accountId: kind === "CREDIT" ? TO : FROM, amountMinor: 100n, at: OLD, ...overrides };
}

function decided(movement: Movement, rejection: string | null = null): Decision {
  return {
    transferId: movement.transferId,
    step: movement.kind,
    accountId: movement.accountId,
    amountMinor: movement.amountMinor,
    rejection,
    at: movement.at,
  };
}

function evidence(parts: Partial<TransferEvidence>): TransferEvidence {
  const movements = parts.movements ?? [];
  return {
    transferId: "t1",
    transfer: undefined,
    movements,
    decisions: parts.decisions ?? movements.map((movement) => decided(movement)),
    reconciliationRefunds: [],
    ...parts,
  };
}

const codes = (findings: Array<{ code: string }>) => findings.map((finding) => finding.code);

describe("transfers the transactions service knows", () => {
  it("accepts each terminal status with exactly its movements", () => {
    expect(judgeTransfer(evidence({ transfer: transfer("COMPLETED"), movements: [move("DEBIT"), move("CREDIT")] }), clock)).toEqual([]);
    expect(judgeTransfer(evidence({ transfer: transfer("FAILED"), movements: [move("DEBIT"), move("REFUND")] }), clock)).toEqual([]);
    expect(
      judgeTransfer(evidence({ transfer: transfer("REJECTED"), decisions: [decided(move("DEBIT"), "INSUFFICIENT_FUNDS")] }), clock),
    ).toEqual([]);
  });

  it("reports a COMPLETED transfer without both DEBIT and CREDIT, and a refund it contradicts", () => {
    expect(codes(judgeTransfer(evidence({ transfer: transfer("COMPLETED"), movements: [move("DEBIT")] }), clock))).toEqual([
      "MOVEMENT_MISSING",
    ]);
    expect(codes(judgeTransfer(evidence({ transfer: transfer("COMPLETED"), movements: [] }), clock))).toEqual([
      "MOVEMENT_MISSING",
      "MOVEMENT_MISSING",
    ]);
    const refunded = judgeTransfer(
      evidence({ transfer: transfer("COMPLETED"), movements: [move("DEBIT"), move("CREDIT"), move("REFUND")] }),
      clock,
    );
    expect(refunded).toMatchObject([{ code: "MOVEMENT_CONTRADICTS_STATUS", transferId: "t1", message: "REFUND of a COMPLETED transfer" }]);
  });

  it("reports a FAILED transfer with a debit and no refund, or with a credit", () => {
    const held = judgeTransfer(evidence({ transfer: transfer("FAILED"), movements: [move("DEBIT")] }), clock);
    expect(held).toMatchObject([{ code: "MOVEMENT_MISSING", message: "FAILED transfer without a REFUND in accounts" }]);
    expect(held[0]!.details).toMatchObject({
      status: "FAILED",
      amountMinor: "100",
      fromAccountId: FROM,
      movements: `DEBIT 100 on ${FROM}`,
    });
    expect(held[0]!.repair).toBeUndefined(); // the saga knows it: a person decides
    expect(
      codes(judgeTransfer(evidence({ transfer: transfer("FAILED"), movements: [move("DEBIT"), move("REFUND"), move("CREDIT")] }), clock)),
    ).toEqual(["MOVEMENT_CONTRADICTS_STATUS"]);
  });

  it("reports a REJECTED transfer that holds a debit", () => {
    expect(codes(judgeTransfer(evidence({ transfer: transfer("REJECTED"), movements: [move("DEBIT")] }), clock))).toEqual([
      "MOVEMENT_CONTRADICTS_STATUS",
    ]);
  });

  it("reports amounts and accounts that differ from the transfer's", () => {
    const findings = judgeTransfer(
      evidence({
        transfer: transfer("COMPLETED"),
        movements: [move("DEBIT"), move("CREDIT", { amountMinor: 90n, accountId: "elsewhere" })],
      }),
      clock,
    );
    expect(findings).toMatchObject([
      { code: "AMOUNT_MISMATCH", message: "CREDIT of 90 for a transfer of 100" },
      { code: "ACCOUNT_MISMATCH", message: `CREDIT on elsewhere, the transfer's account is ${TO}` },
    ]);
  });

  it("leaves transfers in flight alone, and reports one that stopped moving", () => {
    expect(judgeTransfer(evidence({ transfer: transfer("DEBITED", RECENT), movements: [move("DEBIT", { at: RECENT })] }), clock)).toEqual(
      [],
    );
    expect(judgeTransfer(evidence({ transfer: transfer("PENDING", RECENT) }), clock)).toEqual([]);
    // A terminal transfer whose last movement is younger than the grace period is not judged yet.
    expect(judgeTransfer(evidence({ transfer: transfer("COMPLETED"), movements: [move("DEBIT", { at: RECENT })] }), clock)).toEqual([]);
    expect(codes(judgeTransfer(evidence({ transfer: transfer("DEBITED"), movements: [move("DEBIT")] }), clock))).toEqual([
      "TRANSFER_STUCK",
    ]);
  });
});

describe("transfers the transactions service does not know", () => {
  it("offers a refund of a debit nothing gave back, joined to the debit's event", () => {
    const debitEvent = { eventId: "e-debit", correlationId: "corr-1" };
    const findings = judgeTransfer(evidence({ movements: [move("DEBIT")], debitEvent }), clock);
    expect(findings).toEqual([
      expect.objectContaining({
        code: "DEBIT_WITHOUT_TRANSFER",
        transferId: "t1",
        details: expect.objectContaining({ accountId: FROM, amountMinor: "100" }),
        repair: { kind: "refund", transferId: "t1", accountId: FROM, amountMinor: 100n, debitEvent },
      }),
    ]);
  });

  it("does not judge a debit younger than the grace period", () => {
    expect(judgeTransfer(evidence({ movements: [move("DEBIT", { at: RECENT })] }), clock)).toEqual([]);
  });

  it("is settled once its own refund landed, and never asks twice", () => {
    const refundRequest = { transferId: "t1", eventId: "e-refund", at: OLD };
    expect(judgeTransfer(evidence({ movements: [move("DEBIT"), move("REFUND")], reconciliationRefunds: [refundRequest] }), clock)).toEqual(
      [],
    );
    // Requested and still not applied after the grace period: reported, not requested again.
    const pending = judgeTransfer(evidence({ movements: [move("DEBIT")], reconciliationRefunds: [refundRequest] }), clock);
    expect(pending).toMatchObject([{ code: "DEBIT_WITHOUT_TRANSFER" }]);
    expect(pending[0]!.repair).toBeUndefined();
    // Requested within the grace period: in flight.
    expect(
      judgeTransfer(evidence({ movements: [move("DEBIT")], reconciliationRefunds: [{ ...refundRequest, at: RECENT }] }), clock),
    ).toEqual([]);
  });

  it("does not offer a refund accounts already refused", () => {
    const debit = move("DEBIT");
    const refusal: Decision = { ...decided(move("REFUND"), "AMOUNT_MISMATCH") };
    const findings = judgeTransfer(evidence({ movements: [debit], decisions: [decided(debit), refusal] }), clock);
    expect(findings).toMatchObject([{ code: "DEBIT_WITHOUT_TRANSFER", message: expect.stringContaining("AMOUNT_MISMATCH") }]);
    expect(findings[0]!.repair).toBeUndefined();
  });

  it("reports credits and refunds of a transfer it does not know, for a person", () => {
    for (const movements of [[move("DEBIT"), move("CREDIT")], [move("CREDIT")], [move("REFUND")], [move("DEBIT"), move("REFUND")]]) {
      const findings = judgeTransfer(evidence({ movements }), clock);
      expect(codes(findings)).toEqual(["MOVEMENTS_WITHOUT_TRANSFER"]);
      expect(findings[0]!.repair).toBeUndefined();
    }
    // A refund of another amount than the debit is not the reconciliation's settled repair.
    const refundRequest = { transferId: "t1", eventId: "e-refund", at: OLD };
    const uneven = judgeTransfer(
      evidence({ movements: [move("DEBIT"), move("REFUND", { amountMinor: 50n })], reconciliationRefunds: [refundRequest] }),
      clock,
    );
    expect(codes(uneven)).toEqual(["MOVEMENTS_WITHOUT_TRANSFER"]);
  });

  it("reports a decision without money moved", () => {
    const findings = judgeTransfer(evidence({ decisions: [decided(move("DEBIT"), "INSUFFICIENT_FUNDS")] }), clock);
    expect(findings).toMatchObject([{ code: "DECISION_WITHOUT_TRANSFER", details: { decisions: `DEBIT INSUFFICIENT_FUNDS on ${FROM}` } }]);
  });
});

describe("outbox events against the audit log", () => {
  const row = (overrides: Partial<OutboxRow>): OutboxRow => ({
    service: "accounts",
    id: "0190aaaa-0000-7000-8000-000000000001",
    type: "account.created",
    subject: "account.created",
    payload: { id: "0190aaaa-0000-7000-8000-000000000001" },
    createdAt: OLD,
    publishedAt: OLD,
    ...overrides,
  });

  it("offers to republish a published event audit lacks", () => {
    const findings = judgeOutbox([row({})], new Set(), clock);
    expect(findings).toMatchObject([
      {
        code: "EVENT_MISSING_FROM_AUDIT",
        service: "accounts",
        eventId: row({}).id,
        repair: { kind: "republish", subject: "account.created" },
      },
    ]);
  });

  it("reports a row never published, without republishing it (the relay owns it)", () => {
    const findings = judgeOutbox([row({ publishedAt: null })], new Set(), clock);
    expect(findings).toMatchObject([{ code: "EVENT_NOT_PUBLISHED" }]);
    expect(findings[0]!.repair).toBeUndefined();
  });

  it("is quiet about audited events and about rows created or published within the grace period", () => {
    const upper = row({ id: "0190AAAA-0000-7000-8000-000000000001" });
    expect(judgeOutbox([upper], new Set([row({}).id]), clock)).toEqual([]);
    expect(judgeOutbox([row({ createdAt: RECENT, publishedAt: RECENT })], new Set(), clock)).toEqual([]);
    expect(judgeOutbox([row({ publishedAt: RECENT })], new Set(), clock)).toEqual([]);
    expect(judgeOutbox([row({ createdAt: RECENT, publishedAt: null })], new Set(), clock)).toEqual([]);
  });

  it("prunes only rows published and audited before the grace period, never the reconciliation's own refunds or kept events", () => {
    const id = (n: number) => `0190aaaa-0000-7000-8000-${String(n).padStart(12, "0")}`;
    const refund = (n: number, reason: string) =>
      row({
        id: id(n),
        type: "transaction.refund.requested",
        subject: "transaction.refund.requested",
        payload: { id: id(n), data: { transferId: "t1", reason } },
      });
    const rows = [
      row({ id: id(1) }), // pruned
      row({ id: id(2).toUpperCase() }), // pruned: audit stores ids lower-case
      row({ id: id(3) }), // not in the audit log: reported, kept
      row({ id: id(4), publishedAt: null }), // never published: kept
      row({ id: id(5), publishedAt: RECENT }), // published within the grace period
      row({ id: id(6), createdAt: RECENT, publishedAt: RECENT }),
      row({ id: id(7) }), // kept by the caller (an orphan's debit)
      refund(8, RECONCILIATION_REFUND_REASON), // the reconciliation's memory of its refund
      refund(9, "asked by hand"), // any other refund request is a copy like the rest
    ];
    const audited = new Set([1, 2, 4, 5, 6, 7, 8, 9].map(id));
    expect(prunableOutboxIds(rows, audited, clock, new Set([id(7)]))).toEqual([id(1), id(2).toUpperCase(), id(9)]);
    expect(prunableOutboxIds(rows, new Set(), clock, new Set())).toEqual([]);
  });
});

describe("what a run that reads only the changes since its checkpoint must carry by id", () => {
  it("nothing it judged, nothing unfinished, nothing with a status change or a movement since the cutoff", () => {
    // Judged (settled): its verdict is final until something changes.
    expect(judgeLater(evidence({ transfer: transfer("COMPLETED"), movements: [move("DEBIT"), move("CREDIT")] }), clock)).toBe(false);
    // Unfinished transfers are all read again anyway.
    expect(judgeLater(evidence({ transfer: transfer("DEBITED", RECENT), movements: [move("DEBIT", { at: RECENT })] }), clock)).toBe(false);
    // Ended since the cutoff: its status change is read again.
    expect(
      judgeLater(evidence({ transfer: transfer("COMPLETED", RECENT), movements: [move("DEBIT"), move("CREDIT", { at: RECENT })] }), clock),
    ).toBe(false);
    // Unknown to transactions with a movement since the cutoff: accounts' journal is read again.
    expect(judgeLater(evidence({ movements: [move("DEBIT", { at: RECENT })] }), clock)).toBe(false);
  });

  it("a transfer held back only by a recent decision without money, or by a recent refund request", () => {
    const rejectedRefund = { ...decided(move("REFUND")), rejection: "ALREADY_CREDITED", at: RECENT };
    expect(
      judgeLater(
        evidence({
          transfer: transfer("COMPLETED"),
          movements: [move("DEBIT"), move("CREDIT")],
          decisions: [decided(move("DEBIT")), decided(move("CREDIT")), rejectedRefund],
        }),
        clock,
      ),
    ).toBe(true);
    expect(
      judgeLater(
        evidence({
          movements: [move("DEBIT"), move("REFUND")],
          reconciliationRefunds: [{ transferId: "t1", eventId: "e1", at: RECENT }],
        }),
        clock,
      ),
    ).toBe(true);
  });
});

describe("processedEventKeepMs", () => {
  it("keeps a consumer's record of an event a day longer than the streams keep the event", () => {
    expect(processedEventKeepMs(168)).toBe(192 * 3_600_000);
    expect(processedEventKeepMs(1)).toBe(25 * 3_600_000);
  });

  it("keeps every record when the streams keep every message, and refuses a negative age", () => {
    expect(processedEventKeepMs(0)).toBeUndefined();
    expect(() => processedEventKeepMs(-1)).toThrow(/from 0 up/);
    expect(() => processedEventKeepMs(Number.NaN)).toThrow(/from 0 up/);
  });
});
