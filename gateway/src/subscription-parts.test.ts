/** The parts of a transferStatusChanged subscription, each alone: the feed and inbox, the progress, the snapshot query. */
import { buildSchema, parse, print, type FieldNode, type OperationDefinitionNode } from "graphql";
import { describe, expect, it } from "vitest";
import { snapshotPlan } from "./snapshot-query.ts";
import { StatusFeed, StatusInbox, type StatusEvent } from "./status-feed.ts";
import { SubscriptionProgress } from "./subscription-state.ts";

const event = (transferId: string, status: StatusEvent["status"], failureReason: string | null = null): StatusEvent => ({
  transferId,
  userId: "u1",
  status,
  previousStatus: null,
  failureReason,
  changedAt: "2026-12-02T10:00:00.000Z",
});

describe("StatusFeed and StatusInbox", () => {
  it("hands each event only to the inboxes of its transfer, in order, and nothing after close", async () => {
    const feed = new StatusFeed();
    const mine = new StatusInbox(feed, "t1");
    const other = new StatusInbox(feed, "t2");
    feed.deliver(event("t1", "DEBITED"));
    feed.deliver(event("t2", "REJECTED"));
    feed.deliver(event("t1", "COMPLETED"));
    expect((await mine.next(1_000))?.status).toBe("DEBITED");
    expect((await mine.next(1_000))?.status).toBe("COMPLETED");
    expect((await other.next(1_000))?.status).toBe("REJECTED");
    mine.close();
    feed.deliver(event("t1", "FAILED"));
    expect(await mine.next(0)).toBeUndefined();
  });

  it("wakes a waiting inbox when its event arrives, and answers undefined when none comes in time", async () => {
    const feed = new StatusFeed();
    const inbox = new StatusInbox(feed, "t1");
    // A wait of an hour that ends with the event, not the timer.
    const waiting = inbox.next(3_600_000);
    feed.deliver(event("t1", "DEBITED"));
    expect((await waiting)?.status).toBe("DEBITED");
    expect(await inbox.next(1)).toBeUndefined();
    inbox.close();
  });

  it("asks its source for a transfer once, while any inbox follows it, and every inbox waits for that", async () => {
    const calls: string[] = [];
    let confirm: () => void = () => {};
    const feed = new StatusFeed({
      follow: (transferId) => {
        calls.push(`follow ${transferId}`);
        return new Promise<void>((resolve) => {
          confirm = resolve;
        });
      },
      unfollow: (transferId) => calls.push(`unfollow ${transferId}`),
    });
    const first = new StatusInbox(feed, "t1");
    const second = new StatusInbox(feed, "t1");
    let ready = false;
    void Promise.all([first.ready, second.ready]).then(() => {
      ready = true;
    });
    await Promise.resolve();
    expect(ready).toBe(false);
    confirm();
    await Promise.all([first.ready, second.ready]);
    first.close();
    expect(calls).toEqual(["follow t1"]);
    second.close();
    second.close();
    expect(calls).toEqual(["follow t1", "unfollow t1"]);
    // Asked for in upper case, a transfer is followed (and its changes delivered) as events name it.
    const again = new StatusInbox(feed, "T1");
    expect(calls).toEqual(["follow t1", "unfollow t1", "follow t1"]);
    feed.deliver(event("t1", "DEBITED"));
    expect((await again.next(1_000))?.status).toBe("DEBITED");
    again.close();
  });
});

describe("SubscriptionProgress", () => {
  const operation = parse("subscription { changed: transferStatusChanged(id: 1) { status reason: failureReason updatedAt amountMinor } }")
    .definitions[0] as OperationDefinitionNode;
  const progressOf = () => SubscriptionProgress.of(operation.selectionSet.selections[0] as FieldNode);

  it("sends statuses in the lifecycle's order, each once, and is finished at a terminal one", () => {
    const progress = progressOf();
    expect(progress.isNew("PENDING")).toBe(true);
    progress.payload({}, { status: "DEBITED", reason: null, at: "t" });
    expect(progress.isNew("PENDING")).toBe(false);
    expect(progress.isNew("DEBITED")).toBe(false);
    expect(progress.finished).toBe(false);
    expect(
      progress.nextIn([
        { status: "PENDING", reason: null, at: "a" },
        { status: "DEBITED", reason: null, at: "b" },
        { status: "FAILED", reason: "x", at: "c" },
      ]),
    ).toEqual({
      status: "FAILED",
      reason: "x",
      at: "c",
    });
    progress.payload({}, { status: "FAILED", reason: "x", at: "c" });
    expect(progress.finished).toBe(true);
    expect(progress.isNew("COMPLETED")).toBe(false);
  });

  it("answers the status fields from the change reported, under the subscriber's aliases, the rest from the transfer", () => {
    const progress = progressOf();
    const transfer = { status: "COMPLETED", reason: "late", updatedAt: "now", amountMinor: "250" };
    expect(progress.payload(transfer, { status: "PENDING", reason: "ignored before the end", at: "then" })).toEqual({
      data: { changed: { status: "PENDING", reason: null, updatedAt: "then", amountMinor: "250" } },
    });
    expect(progress.payload(transfer, { status: "FAILED", reason: "credit refused", at: "later" }).data).toEqual({
      changed: { status: "FAILED", reason: "credit refused", updatedAt: "later", amountMinor: "250" },
    });
  });
});

describe("SubscriptionProgress.refreshes", () => {
  const refreshes = (selection: string) =>
    SubscriptionProgress.of(
      (parse(`subscription { transferStatusChanged(id: 1) ${selection} }`).definitions[0] as OperationDefinitionNode).selectionSet
        .selections[0] as FieldNode,
    ).refreshes;

  it("reads nothing again for the status fields and fields a transfer never changes", () => {
    expect(refreshes("{ status }")).toBe(false);
    expect(refreshes("{ __typename id s: status failureReason updatedAt amount { minor currency } note toMaskedNumber createdAt }")).toBe(
      false,
    );
    expect(refreshes("{ status fromAccount { id } }")).toBe(false);
  });

  it("reads the transfer again when the selection has anything that can move, or that it cannot see through", () => {
    expect(refreshes("{ status statusHistory { status } }")).toBe(true);
    expect(refreshes("{ status fraudCheck { riskScore } }")).toBe(true);
    expect(refreshes("{ status fromAccount { id balance { minor } } }")).toBe(true);
    expect(refreshes("{ ... on Transfer { status } }")).toBe(true);
    expect(refreshes("{ status ...Parts }")).toBe(true);
  });
});

describe("snapshotPlan", () => {
  const schema = buildSchema(`
    type Account { id: ID! }
    type Transfer { id: ID! status: String! fromAccount(masked: Boolean): Account }
    type Query { transfer(id: ID!): Transfer }
    type Subscription { transferStatusChanged(id: ID!): Transfer! }
  `);

  it("asks the subscription's selection, fragments included, as a transfer(id) query with only the variables it uses", () => {
    const document = parse(`
      subscription Watch($id: ID!, $masked: Boolean, $unused: Int) {
        transferStatusChanged(id: $id) { status ...Parts }
      }
      fragment Parts on Transfer { fromAccount(masked: $masked) { id } }
    `);
    const plan = snapshotPlan({ document, operationName: "Watch", schema, variableValues: { id: "t-9", masked: true, unused: 3 } });
    expect(plan.transferId).toBe("t-9");
    expect(plan.variables).toEqual({ id: "t-9", masked: true, unused: 3, vpTransferId: "t-9" });
    expect(print(parse(plan.query))).toBe(
      print(
        parse(`
          query TransferStatusSnapshot($masked: Boolean, $vpTransferId: ID!) {
            transfer(id: $vpTransferId) { status ...Parts vpStatusHistory: statusHistory { status reason at } }
          }
          fragment Parts on Transfer { fromAccount(masked: $masked) { id } }
        `),
      ),
    );
  });

  it("writes a document's query once per operation: the same text for every subscription, each operation its own, variables each time", () => {
    const document = parse(`
      subscription Short($id: ID!) { transferStatusChanged(id: $id) { status } }
      subscription Long($id: ID!) { transferStatusChanged(id: $id) { status fromAccount { id } } }
    `);
    const plan = (operationName: string, id: string) => snapshotPlan({ document, operationName, schema, variableValues: { id } });
    const [short, shortAgain, long] = [plan("Short", "t-1"), plan("Short", "t-2"), plan("Long", "t-3")];
    expect(shortAgain.query).toBe(short.query);
    expect(shortAgain.variables).toEqual({ id: "t-2", vpTransferId: "t-2" });
    expect(short.query).not.toContain("fromAccount");
    expect(long.query).toContain("fromAccount");
    expect(long.variables).toEqual({ id: "t-3", vpTransferId: "t-3" });
  });
});
