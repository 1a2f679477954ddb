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
import {
  findChecks,
  insertChecks,
  loadFactsOf,
  lockFraudKeys,
  recordKnownDevice,
  storedCheckOf,
  type NewCheck,
  type StoredCheck,
} from "./store.ts";

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
 * deadlock — and the checks already stored read in one query. The new checks are then decided in
 * waves (checkWaves): a wave's facts are read in one statement and its checks stored in one, and
 * each request's facts count exactly the checks before it in the batch of its user and source
 * account, as if decided one by one. Every request is answered in batch order; the last wave's
 * insert carries the answers (one round trip fewer on the saga's path).
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
  const stored = new Map<string, StoredCheck>();
  for (const check of await findChecks(
    tx,
    requests.map(({ data }) => data.transferId),
  ))
    if (check) stored.set(check.transferId, check);
  const decided = new Map<string, NewCheck>();
  const waves = checkWaves(requests, stored);
  let last: NewCheck[] = [];
  for (const wave of waves) {
    // Stored before the next wave reads its facts; the last is stored with the answers.
    if (last.length > 0) await insertChecks(tx, last);
    last = await decideWave(wave, tx, deps);
    for (const check of last) {
      decided.set(check.transfer.transferId, check);
      stored.set(check.transfer.transferId, storedCheckOf(check));
    }
  }
  for (const event of requests) await within(event, () => answer(event, tx, deps, stored.get(event.data.transferId)!, decided));
  if (last.length > 0) await insertChecks(tx, last);
}

type CheckRequest = { data: Pick<Event<"fraud.check.requested">["data"], "transferId" | "userId" | "fromAccountId"> };

/**
 * The new checks of a batch in waves, each wave's requests independent: no two of one user or from
 * one source account, the only keys a check's facts are read by. A request goes one wave after the
 * last that holds either of its keys, so its facts (read with its wave's) count every check before
 * it in the batch that shares a key, and none after it. Requests for a transfer already stored, or
 * already placed, are left out: they are answered with that check.
 */
export function checkWaves<R extends CheckRequest>(requests: readonly R[], stored: ReadonlyMap<string, unknown>): R[][] {
  const waves: R[][] = [];
  const lastWave = new Map<string, number>();
  const placed = new Set<string>();
  for (const request of requests) {
    const { transferId, userId, fromAccountId } = request.data;
    if (stored.has(transferId) || placed.has(transferId)) continue;
    placed.add(transferId);
    const keys = [`user:${userId}`, `account:${fromAccountId}`];
    const wave = Math.max(...keys.map((key) => lastWave.get(key) ?? -1)) + 1;
    for (const key of keys) lastWave.set(key, wave);
    (waves[wave] ??= []).push(request);
  }
  return waves;
}

/** A wave's new checks: its scorable transfers' facts in one statement, the rules run on each. */
async function decideWave(wave: readonly Event<"fraud.check.requested">[], tx: SqlExecutor, deps: CheckDependencies): Promise<NewCheck[]> {
  const asked = wave.map((event) => {
    const transfer: Transfer = {
      ...event.data,
      amountMinor: BigInt(event.data.amountMinor),
      initiatedAt: new Date(event.data.initiatedAt),
    };
    const checkedAt = deps.now();
    // A request that cannot be scored fails closed without reading history (its time may not even be a date).
    return { event, transfer, checkedAt, unscorable: unscorableBecause(transfer, deps.rules, checkedAt) };
  });
  const scorable = asked.filter((request) => request.unscorable === null);
  const facts = await loadFactsOf(
    tx,
    scorable.map((request) => request.transfer),
    deps.rules,
  );
  const factsOf = new Map(scorable.map((request, index) => [request, facts[index]!]));
  return asked.map((request) => {
    const { event, transfer, checkedAt, unscorable } = request;
    const { verdict, evaluation } = unscorable
      ? failClosed(unscorable, deps.rules.failScore)
      : checkTransfer(transfer, factsOf.get(request)!, deps.rules, checkedAt);
    return { transfer, verdict, evaluation, requestEventId: event.id, checkedAt };
  });
}

/**
 * One request's answer: the verdict of its transfer, announced. The first request of a new check is
 * told of (metrics, log); a repeated one — re-published with a new id, since a redelivery never
 * reaches here — re-sends the verdict: the answer for a transfer never changes.
 */
async function answer(
  event: Event<"fraud.check.requested">,
  tx: SqlExecutor,
  deps: CheckDependencies,
  check: StoredCheck,
  decided: Map<string, NewCheck>,
): Promise<void> {
  await emitVerdict(tx, check);
  const decision = decided.get(check.transferId);
  if (decision?.requestEventId !== event.id) {
    if (check.userId !== event.data.userId)
      deps.logger.warn({ transferId: check.transferId }, "check re-requested with another user; re-sending the stored verdict");
    return;
  }
  decided.delete(check.transferId); // told once, should the same event come twice
  const { evaluation } = decision;
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
