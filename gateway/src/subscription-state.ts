/**
 * What one transferStatusChanged subscription has sent: statuses go out in the lifecycle's order,
 * each at most once, and the payload's status fields come from the change being reported.
 */
import { Kind, type ExecutionResult, type FieldNode, type SelectionNode } from "graphql";
import { isTerminalStatus, statusRank, type TransferStatus } from "@vaultpay/events";

/** One entry of Transfer.statusHistory as the graph answers it. */
export type StatusChange = { status: TransferStatus; reason: string | null; at: string };

/**
 * Transfer fields that never change once it is made, with the subfields that stay fixed too (none
 * listed: every subfield does). A selection of only these and the status fields needs no read of
 * the transfer when its status changes.
 */
const FIXED_FIELDS: ReadonlyMap<string, ReadonlySet<string> | undefined> = new Map([
  ["__typename", undefined],
  ["id", undefined],
  ["amount", undefined],
  ["toMaskedNumber", undefined],
  ["note", undefined],
  ["createdAt", undefined],
  // The source account's id, not its balance or anything else the accounts subgraph answers.
  ["fromAccount", new Set(["id", "__typename"])],
]);
/** The fields a status change answers itself (payload below). */
const CHANGE_FIELDS = new Set(["status", "failureReason", "updatedAt"]);

/** Whether every selection is a plain field the change answers or one that never changes. */
function answeredWithoutReading(selections: readonly SelectionNode[]): boolean {
  return selections.every((selection) => {
    if (selection.kind !== Kind.FIELD) return false;
    const name = selection.name.value;
    if (CHANGE_FIELDS.has(name)) return true;
    if (!FIXED_FIELDS.has(name)) return false;
    const fixedSubfields = FIXED_FIELDS.get(name);
    return (
      fixedSubfields === undefined ||
      (selection.selectionSet?.selections ?? []).every(
        (sub) => sub.kind === Kind.FIELD && fixedSubfields.has(sub.name.value) && !sub.selectionSet,
      )
    );
  });
}

export class SubscriptionProgress {
  private last: TransferStatus | undefined;

  /** The subscription field's response key (its alias, if any). */
  private readonly responseKey: string;
  /** Fields of the payload the change itself answers, by response key. */
  private readonly overlays: ReadonlyArray<{ key: string; name: string }>;
  /** Whether the transfer must be read again for each change (its selection has fields that move). */
  readonly refreshes: boolean;

  constructor(responseKey: string, overlays: ReadonlyArray<{ key: string; name: string }>, refreshes: boolean) {
    this.responseKey = responseKey;
    this.overlays = overlays;
    this.refreshes = refreshes;
  }

  /** From the subscription's root field: `transferStatusChanged(id: …) { status updatedAt … }`. */
  static of(root: FieldNode): SubscriptionProgress {
    const fields = (root.selectionSet?.selections ?? []).filter((selection): selection is FieldNode => selection.kind === Kind.FIELD);
    return new SubscriptionProgress(
      root.alias?.value ?? root.name.value,
      fields.map((field) => ({ key: field.alias?.value ?? field.name.value, name: field.name.value })),
      !answeredWithoutReading(root.selectionSet?.selections ?? []),
    );
  }

  /** Whether a status moves on from what was sent; repeats and late events do not. */
  isNew(status: TransferStatus): boolean {
    return this.last === undefined || statusRank(status) > statusRank(this.last);
  }

  /** The transfer reached an end and the subscriber was told. */
  get finished(): boolean {
    return this.last !== undefined && isTerminalStatus(this.last);
  }

  /** The first change of a history (oldest first) not yet sent. */
  nextIn(history: readonly StatusChange[]): StatusChange | undefined {
    return history.find((change) => this.isNew(change.status));
  }

  /** The payload for a change, from the transfer as the graph answered it; records the change as sent. */
  payload(transfer: Record<string, unknown>, change: StatusChange): ExecutionResult {
    const data = { ...transfer };
    for (const { key, name } of this.overlays) {
      if (name === "status") data[key] = change.status;
      else if (name === "failureReason") data[key] = isTerminalStatus(change.status) ? change.reason : null;
      else if (name === "updatedAt") data[key] = change.at;
    }
    this.last = change.status;
    return { data: { [this.responseKey]: data } };
  }
}
