/**
 * `pnpm dlq:replay [--consumer NAME] [--limit N]`: re-publishes dead letters to their original
 * subjects once the cause is fixed, and removes them from DLQ.
 */
import { parseArgs } from "node:util";
import { CONSUMER_NAME_PATTERN, connectJetStream, localNatsUrl, replayDeadLetters } from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";

const { values } = parseArgs({ options: { consumer: { type: "string" }, limit: { type: "string", default: "1000" } } });
const logger = createLogger({ service: "dlq-replay" });
const limit = Number(values.limit);
if (!Number.isInteger(limit) || limit < 1) {
  console.error("--limit must be a positive integer");
  process.exit(2);
}
if (values.consumer !== undefined && !CONSUMER_NAME_PATTERN.test(values.consumer)) {
  console.error("--consumer must be a consumer (durable) name: letters, digits, - and _");
  process.exit(2);
}
const { nc, js, jsm } = await connectJetStream(process.env.NATS_URL ?? localNatsUrl(), "dlq-replay", logger, false);
try {
  const result = await replayDeadLetters({ js, jsm, logger, consumer: values.consumer, limit });
  console.log(`replayed ${result.replayed} dead letter(s); ${result.remaining} left for another run`);
} finally {
  await nc.drain();
}
