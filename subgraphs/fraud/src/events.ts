/**
 * What fraud consumes and emits. Consuming: the check requests of the transfer saga (FRAUD) and
 * the devices auth registers (AUTH) — the only facts fraud has, never a synchronous call.
 * Emitting: one fraud.check.completed per request, appended to the outbox in the transaction that
 * stores the verdict.
 */
import {
  BATCHED_CONSUMER,
  appendToOutbox,
  createEvent,
  inEventContext,
  type Event,
  type EventScope,
  type Eventing,
  type SqlExecutor,
} from "@vaultpay/events";
import type { Logger } from "@vaultpay/kit";
import { checkTransfer, failClosed, unscorableBecause } from "./fraud.ts";
import type { RulesConfig, Transfer } from "./rules.ts";
import { findChecks, insertCheck, loadFacts, lockFraudKeys, recordKnownDevice, storedCheckOf, type StoredCheck } from "./store.ts";

/** Durable consumer names; replicas of fraud share them. */
export const CHECKS_CONSUMER = "fraud-checks";
export const DEVICES_CONSUMER = "fraud-devices";

export interface CheckDependencies {
  rules: RulesConfig;
  logger: Logger;
  now: () => Date;
  /** Told of each new verdict (metrics); a verdict whose transaction then rolls back is retried and told again. */
  onVerdict?: (verdict: { passed: boolean; firedRules: string[]; failedClosed: boolean }) => void;
}

async function emitVerdict(tx: SqlExecutor, check: StoredCheck): Promise<void> {
  await appendToOutbox(
    tx,
    createEvent("fraud.check.completed", {
      transferId: check.transferId,
      passed: check.passed,
      riskScore: check.riskScore,
      reasons: check.reasons,
      customerReasons: check.customerReasons,
      checkedAt: check.checkedAt.toISOString(),
    }),
  );
}

/**
 * Checks one transfer, once. A repeated request for a transfer (a redelivery has the same event id
 * and never reaches here; this is a re-published request with a new id) re-sends the stored
 * verdict: the answer for a transfer never changes.
 */
export async function handleCheckRequested(event: Event, tx: SqlExecutor, deps: CheckDependencies): Promise<void> {
  await handleCheckRequests([event], tx, deps, inEventContext);
}

/**
 * A batch of check requests in one transaction (a batch of one is a batch): every transfer's and
 * user's lock taken in one statement — sorted, so replicas taking overlapping batches cannot
 * deadlock — and the checks already stored read in one query. Then each request is decided in
 * order, its facts read after the checks before it in the batch were stored, so velocity and daily
 * sums count them exactly as across transactions.
 */
export async function handleCheckRequests(
  events: readonly Event[],
  tx: SqlExecutor,
  deps: CheckDependencies,
  within: EventScope,
  recordAs?: string,
): Promise<void> {
  const asked = events.filter((event): event is Event<"fraud.check.requested"> => event.type === "fraud.check.requested");
  if (asked.length === 0) return;
  // Per transfer, one verdict ever; per user, velocity and daily sums see every other check. With
  // recordAs (the consumer, which deduplicates itself), recorded as processed in the same statement.
  const fresh = await lockFraudKeys(
    tx,
    asked.flatMap(({ data }) => [`transfer:${data.transferId}`, `user:${data.userId}`]),
    recordAs === undefined ? undefined : { consumer: recordAs, events: asked },
  );
  const requests = fresh ? asked.filter((event) => fresh.has(event.id.toLowerCase())) : asked;
  if (requests.length === 0) return;
  const transferIds = requests.map(({ data }) => data.transferId);
  const stored = new Map<string, StoredCheck>();
  for (const check of await findChecks(tx, transferIds)) if (check) stored.set(check.transferId, check);
  for (const event of requests) await within(event, () => decide(event, tx, deps, stored));
}

/** One request's verdict: the stored one again, or a new one (then stored and announced). */
async function decide(
  event: Event<"fraud.check.requested">,
  tx: SqlExecutor,
  deps: CheckDependencies,
  stored: Map<string, StoredCheck>,
): Promise<void> {
  const { data } = event;
  const earlier = stored.get(data.transferId);
  if (earlier) {
    if (earlier.userId !== data.userId)
      deps.logger.warn({ transferId: data.transferId }, "check re-requested with another user; re-sending the stored verdict");
    await emitVerdict(tx, earlier);
    return;
  }
  const transfer: Transfer = { ...data, amountMinor: BigInt(data.amountMinor), initiatedAt: new Date(data.initiatedAt) };
  const checkedAt = deps.now();
  // A request that cannot be scored fails closed without reading history (its time may not even be a date).
  const unscorable = unscorableBecause(transfer, deps.rules, checkedAt);
  const { verdict, evaluation } = unscorable
    ? failClosed(unscorable, deps.rules.failScore)
    : checkTransfer(transfer, await loadFacts(tx, transfer, deps.rules), deps.rules, checkedAt);
  const newCheck = { transfer, verdict, evaluation, requestEventId: event.id, checkedAt };
  const check = storedCheckOf(newCheck);
  // Announced first, stored after: insertCheck writes the verdict's outbox row in its own statement.
  await emitVerdict(tx, check);
  await insertCheck(tx, newCheck);
  stored.set(check.transferId, check);
  deps.onVerdict?.({
    passed: check.passed,
    firedRules: evaluation.rules.filter((rule) => rule.fired).map((rule) => rule.rule),
    failedClosed: evaluation.failedClosed !== null,
  });
  deps.logger.info(
    { transferId: check.transferId, riskScore: check.riskScore, passed: check.passed, failedClosed: evaluation.failedClosed !== null },
    "transfer checked",
  );
}

/** Remembers a device auth registered for a user: the unknown-device rule's only source. */
export async function handleDeviceRegistered(event: Event, tx: SqlExecutor): Promise<void> {
  if (event.type !== "auth.device.registered") return;
  const { userId, deviceId, deviceRecordId } = event.data;
  await recordKnownDevice(tx, { userId, deviceId, deviceRecordId, registeredAt: new Date(event.occurredAt) });
}

/** One durable per stream, one filter subject each (NATS 2.9). */
export async function startConsumers<T extends SqlExecutor>(eventing: Eventing<T>, deps: CheckDependencies): Promise<void> {
  await eventing.consume({
    name: DEVICES_CONSUMER,
    stream: "AUTH",
    filterSubject: "auth.device.registered",
    handle: (event, tx) => handleDeviceRegistered(event, tx),
  });
  await eventing.consume({
    name: CHECKS_CONSUMER,
    stream: "FRAUD",
    filterSubject: "fraud.check.requested",
    handle: (event, tx) => handleCheckRequested(event, tx, deps),
    // Recorded as processed in the statement that takes the batch's locks (lockFraudKeys).
    handleBatch: (events, tx, within) => handleCheckRequests(events, tx, deps, within, CHECKS_CONSUMER),
    deduplicatesItself: true,
    ...BATCHED_CONSUMER,
  });
}
