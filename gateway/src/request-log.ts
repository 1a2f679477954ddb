import type { ApolloServerPlugin } from "@apollo/server";
import { TEXT_LIMITS, boundText, createEvent, eventHeaders, type JetStreamLink } from "@vaultpay/events";
import { currentContext, type Logger } from "@vaultpay/kit";

/**
 * One log line and one `gateway.request` event per operation: who, which operation, outcome and
 * duration, under the request's correlation id. Variables are never logged (they hold passwords
 * and OTP codes). The event is published directly: the gateway has no database, and a request log
 * lost while NATS is down is logged locally instead.
 */
export function requestLogPlugin(logger: Logger, js: JetStreamLink["js"]): ApolloServerPlugin {
  return {
    async requestDidStart() {
      const startedAt = performance.now();
      return {
        async willSendResponse({ operation, operationName, errors }) {
          const durationMs = Math.round(performance.now() - startedAt);
          // Bounded where built: the operation name is the client's, and an event that cannot be
          // built would lose the request's record.
          const errorCodes = [...new Set((errors ?? []).map((error) => boundText(String(error.extensions?.code ?? "INTERNAL"), 64)))].slice(
            0,
            50,
          );
          const data = {
            operationName: operationName ? boundText(operationName, TEXT_LIMITS.operationNameChars) : null,
            operationType: operation?.operation ?? null,
            outcome: errorCodes.length > 0 ? ("error" as const) : ("success" as const),
            errorCodes,
            durationMs,
          };
          logger.info({ ...data, actor: currentContext()?.actor }, "graphql request");
          const event = createEvent("gateway.request", data);
          js.publish(event.type, JSON.stringify(event), { msgID: event.id, headers: eventHeaders(event) }).catch((error: unknown) =>
            logger.warn({ err: error }, "gateway.request event not published"),
          );
        },
      };
    },
  };
}
