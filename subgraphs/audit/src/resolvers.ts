import type { GraphQLResolverMap } from "@apollo/subgraph";
import { DeadLetterQueue, type DeadLetterSummary } from "@vaultpay/events";
import { DateTimeScalar } from "@vaultpay/kit";
import { serviceStatus } from "@vaultpay/service";
import { AuditLog } from "./service.ts";
import type { ChainedRecord } from "./chain.ts";
import { DeadLetters } from "./dead-letters.ts";
import { recordReplayRequest } from "./events.ts";
import type { AuditContext, Runtime } from "./runtime.ts";
import { createAuditStore } from "./store.ts";

type Args = Record<string, unknown>;

/** Thin: parse input, call the domain, map errors. */
export function createResolvers(runtime: Runtime): GraphQLResolverMap<AuditContext> {
  const log = new AuditLog(createAuditStore(runtime.db));
  const { js, jsm } = runtime.eventing;
  const deadLetters = new DeadLetters(new DeadLetterQueue(js, jsm, runtime.logger), (request) => recordReplayRequest(runtime, request));
  return {
    DateTime: DateTimeScalar,
    Query: {
      auditStatus: serviceStatus(runtime, "audit"),
      auditLog: (_: unknown, args: Args, context: AuditContext) =>
        log.records(context.caller, {
          correlationId: args.correlationId as string | null | undefined,
          type: args.type as string | null | undefined,
          first: args.first as number | null | undefined,
          afterSeq: args.afterSeq as number | null | undefined,
        }),
      verifyAuditChain: (_: unknown, __: Args, context: AuditContext) => log.verify(context.caller),
      deadLetters: (_: unknown, args: Args, context: AuditContext) =>
        deadLetters.list(context.caller, {
          consumer: args.consumer as string | null | undefined,
          first: args.first as number | null | undefined,
        }),
    },
    Mutation: {
      replayDeadLetters: (_: unknown, args: Args, context: AuditContext) =>
        deadLetters.replay(context.caller, {
          consumer: args.consumer as string | null | undefined,
          ids: args.ids as string[] | null | undefined,
        }),
    },
    DeadLetter: {
      id: (letter: DeadLetterSummary) => String(letter.dlqSeq),
      deliveryCount: (letter: DeadLetterSummary) => letter.deliveries,
      lastError: (letter: DeadLetterSummary) => letter.error,
    },
    AuditRecord: {
      __resolveReference: (reference: { id: string }, context: AuditContext) => log.record(context.caller, reference.id),
      id: (record: ChainedRecord) => record.eventId,
      occurredAt: (record: ChainedRecord) => new Date(record.occurredAt),
    },
  };
}
