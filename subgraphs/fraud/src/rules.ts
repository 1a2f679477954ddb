/**
 * The fraud rules: each a pure function of one transfer, the facts the fraud database holds about
 * its user, and the configuration. No I/O, no clock: everything a rule reads is in its input, so a
 * stored evaluation can be explained (and a rule tested) without a database.
 */

/** The transfer under check, as fraud.check.requested describes it. */
export interface Transfer {
  transferId: string;
  userId: string;
  fromAccountId: string;
  toAccountId: string;
  amountMinor: bigint;
  currency: string;
  /**
   * The device the request came from: the DPoP-proven key's device id when `deviceProven`, else
   * the id the client claimed (x-device-id), null when it sent none.
   */
  requestDeviceId: string | null;
  /** Whether the gateway verified a proof of the request's device key (DPoP). */
  deviceProven: boolean;
  /** The device bound to the session of the access token. */
  sessionDeviceId: string;
  initiatedAt: Date;
}

/** How many transfers and how much money: a figure the store sums in SQL, never row by row. */
export interface Tally {
  count: number;
  amountMinor: bigint;
}

/**
 * What the fraud database knows around one transfer (built by the store, read by the rules). The
 * history figures are sums over earlier checks (each requested check is one transfer attempt),
 * the transfer itself left out: the store reads a bounded number of figures, however busy the user.
 */
export interface Facts {
  /**
   * Attempts, whatever their verdict, initiated less than the velocity window before or after the
   * transfer (check requests may arrive out of initiation order): by this user, and from this
   * source account (whoever sent them).
   */
  velocity: { user: Tally; account: Tally };
  /**
   * The user's passed transfers (money that moved; failed ones were refunded) initiated on the
   * transfer's calendar day in the daily-limit zone (`calendarDayRange`).
   */
  sameDayPassed: Tally;
  /** The amounts of the user's most recent passed transfers (at most the sample size), newest first. */
  recentPassedAmountsMinor: readonly bigint[];
  /** Whether this user already sent a transfer that passed to the destination account. */
  paidPayeeBefore: boolean;
  /** Device fingerprints auth registered for the user. */
  knownDeviceIds: readonly string[];
}

export interface RulesConfig {
  /** A score at or above this fails the check. */
  failScore: number;
  highAmount: { weight: number; thresholdMinor: bigint };
  unusualAmount: { weight: number; multiplier: number; minHistory: number; sampleSize: number };
  velocity: { weight: number; windowSeconds: number; maxTransfers: number; maxAmountMinor: bigint };
  unknownDevice: { weight: number };
  deviceMismatch: { weight: number };
  unprovenDevice: { weight: number };
  newPayee: { weight: number };
  dailyLimit: { weight: number; limitMinor: bigint; timeZone: string };
  /** Currencies whose minor units the amount thresholds are written in. */
  currencies: readonly string[];
}

export type RuleName =
  | "high-amount"
  | "unusual-amount"
  | "velocity"
  | "unknown-device"
  | "device-mismatch"
  | "unproven-device"
  | "new-payee"
  | "daily-limit";

/** Figures a rule computed: stored with the verdict, so it can be explained later. */
export type RuleDetail = Record<string, string | number | boolean | null>;

export interface RuleResult {
  rule: RuleName;
  fired: boolean;
  /** The configured weight; counts towards the score only when fired. */
  weight: number;
  /** One line for people (API and event), set when fired. */
  reason: string | null;
  detail: RuleDetail;
}

export interface Rule {
  name: RuleName;
  evaluate: (transfer: Transfer, facts: Facts, config: RulesConfig) => RuleResult;
}

function result(rule: RuleName, weight: number, reason: string | null, detail: RuleDetail): RuleResult {
  return { rule, fired: reason !== null, weight, reason, detail };
}

/** Over an absolute amount: strictly greater than the threshold fires, equal does not. */
export const highAmount: Rule = {
  name: "high-amount",
  evaluate(transfer, _facts, config) {
    const { weight, thresholdMinor } = config.highAmount;
    const fired = transfer.amountMinor > thresholdMinor;
    return result(
      "high-amount",
      weight,
      fired ? `Amount ${transfer.amountMinor} is over the high-amount threshold of ${thresholdMinor}` : null,
      {
        thresholdMinor: thresholdMinor.toString(),
      },
    );
  },
};

/** The median of integer amounts; for an even count the lower-rounded mean of the middle two. */
export function medianMinor(amounts: readonly bigint[]): bigint {
  if (amounts.length === 0) throw new RangeError("median of no amounts");
  const sorted = [...amounts].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2n;
}

/**
 * Unusual for this user: more than `multiplier` × the median of their recent passed transfers. A
 * user with fewer than `minHistory` of them has no "usual" yet, so the rule stays quiet (high
 * amount and new payee cover first transfers).
 */
export const unusualAmount: Rule = {
  name: "unusual-amount",
  evaluate(transfer, facts, config) {
    const { weight, multiplier, minHistory, sampleSize } = config.unusualAmount;
    const sample = facts.recentPassedAmountsMinor.slice(0, sampleSize);
    if (sample.length < minHistory) return result("unusual-amount", weight, null, { sampleSize: sample.length, medianMinor: null });
    const median = medianMinor(sample);
    // Integer comparison with the multiplier in hundredths: no float touches an amount.
    const multiplierHundredths = BigInt(Math.round(multiplier * 100));
    const fired = transfer.amountMinor * 100n > median * multiplierHundredths;
    return result(
      "unusual-amount",
      weight,
      fired
        ? `Amount ${transfer.amountMinor} is over ${multiplier}× this user's median of ${median} over their last ${sample.length} transfers`
        : null,
      { sampleSize: sample.length, medianMinor: median.toString() },
    );
  },
};

/**
 * The instants less than the window away from `initiatedAt`, either side (check requests may
 * arrive out of initiation order): both bounds exclusive. Where the store counts velocity.
 */
export function velocityWindow(initiatedAt: Date, windowSeconds: number): { after: Date; before: Date } {
  const t = initiatedAt.getTime();
  return { after: new Date(t - windowSeconds * 1000), before: new Date(t + windowSeconds * 1000) };
}

/**
 * Too many transfers, or too much money, by one user or from one account inside the sliding
 * window. Attempts count whatever their verdict: a burst of refused transfers is itself a signal.
 * The transfer under check counts; more than the maximum fires.
 */
export const velocity: Rule = {
  name: "velocity",
  evaluate(transfer, facts, config) {
    const { weight, windowSeconds, maxTransfers, maxAmountMinor } = config.velocity;
    const scopes = [
      { label: "this user", tally: facts.velocity.user },
      { label: "this account", tally: facts.velocity.account },
    ].map(({ label, tally }) => ({ label, count: tally.count + 1, amountMinor: tally.amountMinor + transfer.amountMinor }));
    const problems: string[] = [];
    for (const scope of scopes) {
      if (scope.count > maxTransfers) problems.push(`${scope.count} transfers by ${scope.label} (max ${maxTransfers})`);
      if (scope.amountMinor > maxAmountMinor) problems.push(`${scope.amountMinor} sent by ${scope.label} (max ${maxAmountMinor})`);
    }
    const [user, account] = scopes;
    return result("velocity", weight, problems.length > 0 ? `Velocity within ${windowSeconds} s: ${problems.join("; ")}` : null, {
      userCount: user!.count,
      userAmountMinor: user!.amountMinor.toString(),
      accountCount: account!.count,
      accountAmountMinor: account!.amountMinor.toString(),
    });
  },
};

/**
 * The request's proven device (or, without one, the session's) is not one auth registered for the
 * user. An unproven request's claimed id is never looked up: the unproven-device rule scores it.
 */
export const unknownDevice: Rule = {
  name: "unknown-device",
  evaluate(transfer, facts, config) {
    if (!transfer.deviceProven)
      return result("unknown-device", config.unknownDevice.weight, null, { knownDevices: facts.knownDeviceIds.length, proven: false });
    const deviceId = transfer.requestDeviceId ?? transfer.sessionDeviceId;
    const known = facts.knownDeviceIds.includes(deviceId);
    return result(
      "unknown-device",
      config.unknownDevice.weight,
      known ? null : "The transfer came from a device not registered for this user",
      {
        knownDevices: facts.knownDeviceIds.length,
      },
    );
  },
};

/**
 * The request proved another device than the session's (a token used with some other key), or
 * named no device at all. Only proven devices are compared: a claimed x-device-id is whatever the
 * caller typed — a thief types the session's.
 */
export const deviceMismatch: Rule = {
  name: "device-mismatch",
  evaluate(transfer, _facts, config) {
    const { requestDeviceId, sessionDeviceId } = transfer;
    if (!transfer.deviceProven)
      return result("device-mismatch", config.deviceMismatch.weight, null, { requestDeviceSent: requestDeviceId !== null, proven: false });
    const reason =
      requestDeviceId === null
        ? "The transfer request carried no device id"
        : requestDeviceId !== sessionDeviceId
          ? "The transfer request came from a different device than the signed-in session"
          : null;
    return result("device-mismatch", config.deviceMismatch.weight, reason, { requestDeviceSent: requestDeviceId !== null });
  },
};

/**
 * The request proved no device key (a bearer session: Apollo Sandbox, curl, a script, or a stolen
 * token with a forged x-device-id). Weighted to stay under the fail score alone — such clients
 * can still move small sums — but to tip a transfer that is also new, large or fast.
 */
export const unprovenDevice: Rule = {
  name: "unproven-device",
  evaluate(transfer, _facts, config) {
    return result("unproven-device", config.unprovenDevice.weight, transfer.deviceProven ? null : "The request did not prove its device", {
      claimedDeviceId: transfer.deviceProven ? null : transfer.requestDeviceId,
    });
  },
};

/** First transfer from this user to that account (an earlier refused one does not make it known). */
export const newPayee: Rule = {
  name: "new-payee",
  evaluate(_transfer, facts, config) {
    return result(
      "new-payee",
      config.newPayee.weight,
      facts.paidPayeeBefore ? null : "First transfer from this user to the destination account",
      {},
    );
  },
};

const dayFormats = new Map<string, Intl.DateTimeFormat>();

/** The calendar day (YYYY-MM-DD) of an instant in an IANA time zone. */
export function calendarDay(instant: Date, timeZone: string): string {
  let format = dayFormats.get(timeZone);
  if (!format) {
    // en-CA formats dates as YYYY-MM-DD.
    format = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" });
    dayFormats.set(timeZone, format);
  }
  return format.format(instant);
}

/** Far enough either side of an instant to reach past its calendar day's bounds in any zone. */
const DAY_SEARCH_MS = 48 * 3600 * 1000;
const dayRanges = new Map<string, { day: string; from: Date; to: Date }>();

/** The first millisecond in (lo, hi] where `reached` holds, given it fails at lo and, once it holds, keeps holding up to hi. */
function firstInstant(reached: (instant: Date) => boolean, lo: number, hi: number): number {
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (reached(new Date(mid))) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * The calendar day of an instant in a zone, as the instants it spans: `from` inclusive, `to`
 * exclusive, found from `calendarDay` itself (so a day of 23 or 25 hours, or one that starts at
 * 01:00 because midnight was skipped, is what the zone's rules make it). Cached per zone and day.
 */
export function calendarDayRange(instant: Date, timeZone: string): { day: string; from: Date; to: Date } {
  const day = calendarDay(instant, timeZone);
  const key = `${timeZone}\u0000${day}`;
  const cached = dayRanges.get(key);
  if (cached) return cached;
  const t = instant.getTime();
  const from = firstInstant((at) => calendarDay(at, timeZone) >= day, t - DAY_SEARCH_MS, t);
  const to = firstInstant((at) => calendarDay(at, timeZone) > day, t, t + DAY_SEARCH_MS);
  const range = { day, from: new Date(from), to: new Date(to) };
  // A handful of days are ever current; the bound only keeps a long-lived process small.
  if (dayRanges.size >= 64) dayRanges.clear();
  dayRanges.set(key, range);
  return range;
}

/**
 * The user's passed transfers on the transfer's calendar day in the configured zone, plus this
 * one, over the limit (strictly) fires. Refused transfers were refunded, so they do not count.
 */
export const dailyLimit: Rule = {
  name: "daily-limit",
  evaluate(transfer, facts, config) {
    const { weight, limitMinor, timeZone } = config.dailyLimit;
    const day = calendarDay(transfer.initiatedAt, timeZone);
    const totalMinor = facts.sameDayPassed.amountMinor + transfer.amountMinor;
    const fired = totalMinor > limitMinor;
    return result(
      "daily-limit",
      weight,
      fired ? `Transfers on ${day} (${timeZone}) would total ${totalMinor}, over the daily limit of ${limitMinor}` : null,
      {
        day,
        totalMinor: totalMinor.toString(),
      },
    );
  },
};

/** Every rule, in the order reasons are listed. */
export const RULES: readonly Rule[] = [
  highAmount,
  unusualAmount,
  velocity,
  unknownDevice,
  deviceMismatch,
  unprovenDevice,
  newPayee,
  dailyLimit,
];

export interface Score {
  riskScore: number;
  passed: boolean;
  reasons: string[];
}

/**
 * The fired weights summed and capped at 100; a score equal to the fail score fails. A rule
 * weighted 0 is switched off: evaluated and stored, but neither scored nor listed as a reason.
 */
export function score(results: readonly RuleResult[], failScore: number): Score {
  const fired = results.filter((r) => r.fired && r.weight > 0);
  const riskScore = Math.min(
    100,
    fired.reduce((total, r) => total + r.weight, 0),
  );
  return { riskScore, passed: riskScore < failScore, reasons: fired.map((r) => r.reason!) };
}
