/**
 * The fraud check of one transfer: validate what the request says, run every rule on the facts,
 * score. Pure: the store loads the facts, the event handler stores and announces the verdict.
 * A check that cannot be computed fails closed (passed = false, with the reason), never passes.
 */
import { DomainError, requireAdmin, type Caller } from "@vaultpay/kit";
import { TEXT_LIMITS, boundText } from "@vaultpay/events";
import { RULES, score, type Facts, type RuleName, type RuleResult, type RulesConfig, type Transfer } from "./rules.ts";

/** How far in the future a request's initiatedAt may be (clock skew between services). */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;

export interface Verdict {
  riskScore: number;
  passed: boolean;
  /** One line per rule that fired, with its figures: for operators (ADMIN) and the audit log. */
  reasons: string[];
  /** The same in plain words without thresholds, medians or score: what the transfer's owner sees. */
  customerReasons: string[];
}

/**
 * What a customer is told for each rule that fired. No figures: a threshold, a median or a limit
 * shown to whoever holds the session is a guide to staying just under it (issue 15).
 */
const CUSTOMER_REASONS: Record<RuleName, string> = {
  "high-amount": "The amount is higher than we send without a further check",
  "unusual-amount": "The amount is unusual for this customer",
  velocity: "Too many transfers, or too much money, in a short time",
  "unknown-device": "The transfer came from a device not registered for this customer",
  "device-mismatch": "The transfer came from another device than the signed-in session",
  "unproven-device": "The transfer was sent without proof of a registered device",
  "new-payee": "This is the first transfer to this payee",
  "daily-limit": "The transfer would go over the daily limit",
};
const CUSTOMER_REASON_FAILED_CLOSED = "The fraud check could not be completed";

/** The customer's lines of a stored evaluation, in rule order, bounded like the event that carries them. */
export function customerReasons(evaluation: Pick<Evaluation, "failedClosed" | "rules">): string[] {
  if (evaluation.failedClosed !== null) return [CUSTOMER_REASON_FAILED_CLOSED];
  return evaluation.rules
    .filter((rule) => rule.fired && rule.weight > 0)
    .slice(0, TEXT_LIMITS.ruleReasons)
    .map((rule) => CUSTOMER_REASONS[rule.rule]);
}

/** The rules' own lines, cut where they are built so the verdict's event can always be built. */
function boundReasons(reasons: readonly string[]): string[] {
  return reasons.slice(0, TEXT_LIMITS.ruleReasons).map((reason) => boundText(reason, TEXT_LIMITS.ruleReasonChars));
}

/** What is stored with a verdict: enough to explain it after the configuration changed. */
export interface Evaluation {
  failScore: number;
  /** Set when the check failed closed; the rules did not run then. */
  failedClosed: string | null;
  facts: {
    /** Attempts less than the velocity window away, this transfer left out: by the user, from the account. */
    windowTransfersByUser: number;
    windowTransfersFromAccount: number;
    /** The user's passed transfers earlier (or later) on the same calendar day. */
    sameDayPassedTransfers: number;
    recentPassedTransfers: number;
    paidPayeeBefore: boolean;
    knownDevices: number;
  } | null;
  rules: RuleResult[];
}

export interface CheckOutcome {
  verdict: Verdict;
  evaluation: Evaluation;
}

/** The score a check gets when it cannot be computed: the maximum, so it fails whatever the fail score. */
export const FAIL_CLOSED_SCORE = 100;

export function failClosed(why: string, failScore: number): CheckOutcome {
  const evaluation: Evaluation = { failScore, failedClosed: why, facts: null, rules: [] };
  return {
    verdict: {
      riskScore: FAIL_CLOSED_SCORE,
      passed: false,
      reasons: boundReasons([`Fraud check could not be computed: ${why}`]),
      customerReasons: customerReasons(evaluation),
    },
    evaluation,
  };
}

/**
 * Why the request cannot be checked, or null. The event schema already refused malformed fields;
 * these are requests well-formed yet impossible to score honestly.
 */
export function unscorableBecause(transfer: Transfer, config: RulesConfig, now: Date): string | null {
  if (transfer.amountMinor <= 0n) return "the amount is not positive";
  if (transfer.fromAccountId === transfer.toAccountId) return "the source and destination accounts are the same";
  if (!config.currencies.includes(transfer.currency)) return `amount limits are not configured for currency ${transfer.currency}`;
  if (Number.isNaN(transfer.initiatedAt.getTime())) return "the initiation time is not a valid date";
  if (transfer.initiatedAt.getTime() > now.getTime() + MAX_CLOCK_SKEW_MS) return "the initiation time is in the future";
  return null;
}

export function checkTransfer(transfer: Transfer, facts: Facts, config: RulesConfig, now: Date): CheckOutcome {
  const unscorable = unscorableBecause(transfer, config, now);
  if (unscorable) return failClosed(unscorable, config.failScore);
  const rules = RULES.map((rule) => rule.evaluate(transfer, facts, config));
  const evaluation: Evaluation = {
    failScore: config.failScore,
    failedClosed: null,
    facts: {
      windowTransfersByUser: facts.velocity.user.count,
      windowTransfersFromAccount: facts.velocity.account.count,
      sameDayPassedTransfers: facts.sameDayPassed.count,
      recentPassedTransfers: facts.recentPassedAmountsMinor.length,
      paidPayeeBefore: facts.paidPayeeBefore,
      knownDevices: facts.knownDeviceIds.length,
    },
    rules,
  };
  const { riskScore, passed, reasons } = score(rules, config.failScore);
  return { verdict: { riskScore, passed, reasons: boundReasons(reasons), customerReasons: customerReasons(evaluation) }, evaluation };
}

/** Upper bound of `fraudChecks(first:)`: an admin screen, not an export. */
export const MAX_CHECKS_PAGE = 200;

/** Only an ADMIN lists checks; fraud decides this itself, whatever the gateway did (zero trust). */
export function assertAdmin(caller: Caller | undefined): void {
  requireAdmin(caller, "The fraud check list");
}

export function checksPageSize(first: number): number {
  if (!Number.isInteger(first) || first < 1 || first > MAX_CHECKS_PAGE) {
    throw new DomainError("BAD_USER_INPUT", `first must be between 1 and ${MAX_CHECKS_PAGE}`, { field: "first" });
  }
  return first;
}

/**
 * Whether a caller may see a transfer's check. Transactions already refused others' transfers
 * before the gateway asks here; checking the owner again costs nothing and holds if it did not.
 */
export function maySeeCheck(caller: Caller | undefined, check: { userId: string }): boolean {
  return caller !== undefined && (caller.role === "ADMIN" || caller.userId === check.userId);
}

/** An ADMIN reads the rules' figures; the transfer's owner reads plain words. */
export function reasonsFor(caller: Caller | undefined, check: Verdict): string[] {
  return caller?.role === "ADMIN" ? check.reasons : check.customerReasons;
}
