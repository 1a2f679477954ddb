/**
 * `pnpm reconcile [--repair] [--prune] [--keep-processed-hours N] [--full] [--grace-seconds N] [--json]`:
 * compares accounts' money movements with transactions' sagas and every service's outbox with the
 * audit log (packages/reconcile). Reports only, unless --repair; --prune deletes outbox rows the
 * audit log holds and the consumers' processed_event rows older than --keep-processed-hours
 * (default: NATS_STREAM_MAX_AGE_HOURS and a day; with streams that keep everything, none); the
 * money is read from where the last run left off, or whole with --full (and on the first run).
 * Exit 0: nothing left to do; 1: findings left unrepaired; 2: bad usage; 3: could not run (a
 * database or NATS unreachable); 78: bad configuration.
 *
 * Databases: DATABASE_URL names the server (default: the local stack's), each service's database
 * is vaultpay_<service> on it; <SERVICE>_DATABASE_URL (e.g. AUDIT_DATABASE_URL) overrides one.
 * NATS_URL (default: the local stack's) is used only to republish events audit lacks;
 * NATS_STREAM_MAX_AGE_HOURS is the services' own setting (give the job the same value).
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { localNatsUrl } from "@vaultpay/events";
import { baseConfigSchema, createLogger, loadConfig, natsUrlSchema } from "@vaultpay/kit";
import { SERVICES, serviceDatabaseUrl, type ServiceName } from "@vaultpay/migrate";
import { DEFAULT_GRACE_MS, formatFinding, formatSummary, processedEventKeepMs, reconcile, reportJson } from "@vaultpay/reconcile";

const usage = "usage: pnpm reconcile [--repair] [--prune] [--keep-processed-hours N] [--full] [--grace-seconds N] [--json]";
let values: {
  repair?: boolean;
  prune?: boolean;
  full?: boolean;
  json?: boolean;
  "grace-seconds"?: string;
  "keep-processed-hours"?: string;
};
try {
  ({ values } = parseArgs({
    options: {
      repair: { type: "boolean", default: false },
      prune: { type: "boolean", default: false },
      full: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      "grace-seconds": { type: "string", default: String(DEFAULT_GRACE_MS / 1000) },
      "keep-processed-hours": { type: "string" },
    },
  }));
} catch (error) {
  console.error(`${(error as Error).message}\n${usage}`);
  process.exit(2);
}
const graceSeconds = Number(values["grace-seconds"]);
// Zero is allowed for a quiet platform (tests, after an outage was fixed); a week is plenty.
if (!Number.isInteger(graceSeconds) || graceSeconds < 0 || graceSeconds > 7 * 24 * 3600) {
  console.error(`--grace-seconds must be a whole number of seconds from 0 to 604800\n${usage}`);
  process.exit(2);
}

const keepHoursText = values["keep-processed-hours"];
const keepHours = keepHoursText === undefined ? undefined : Number(keepHoursText);
// A consumer needs its record of an event for as long as a copy can come back unasked (see
// processedEventKeepMs); an hour is the least that still covers a lost ack's redeliveries.
if (keepHours !== undefined && (!Number.isInteger(keepHours) || keepHours < 1)) {
  console.error(`--keep-processed-hours must be a whole number of hours from 1 up\n${usage}`);
  process.exit(2);
}

const databaseUrl = z.string().url();
const config = loadConfig(
  z.object({
    DATABASE_URL: databaseUrl.default("postgres://postgres:postgres@127.0.0.1:54329/postgres"),
    NATS_URL: natsUrlSchema().default(localNatsUrl()),
    LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("warn"),
    NATS_STREAM_MAX_AGE_HOURS: baseConfigSchema.shape.NATS_STREAM_MAX_AGE_HOURS,
    ...Object.fromEntries(SERVICES.map((service) => [`${service.toUpperCase()}_DATABASE_URL`, databaseUrl.optional()])),
  }),
) as Record<`${Uppercase<ServiceName>}_DATABASE_URL`, string | undefined> & {
  DATABASE_URL: string;
  NATS_URL: string;
  LOG_LEVEL: string;
  NATS_STREAM_MAX_AGE_HOURS: number;
};
const databaseUrls = Object.fromEntries(
  SERVICES.map((service) => [
    service,
    config[`${service.toUpperCase() as Uppercase<ServiceName>}_DATABASE_URL`] ?? serviceDatabaseUrl(config.DATABASE_URL, service),
  ]),
) as Record<ServiceName, string>;
const keepMs = keepHours !== undefined ? keepHours * 3_600_000 : processedEventKeepMs(config.NATS_STREAM_MAX_AGE_HOURS);
// Logs go to stderr: stdout is the report (and must stay valid JSON with --json).
const logger = createLogger({ service: "reconcile", level: config.LOG_LEVEL, destination: process.stderr });

try {
  const report = await reconcile({
    databaseUrls,
    natsUrl: config.NATS_URL,
    graceMs: graceSeconds * 1000,
    repair: values.repair ?? false,
    prune: values.prune ?? false,
    full: values.full ?? false,
    processedEventsBefore: keepMs === undefined ? undefined : new Date(Date.now() - keepMs),
    logger,
  });
  if (values.json) console.log(reportJson(report));
  else {
    for (const finding of report.findings) console.log(formatFinding(finding));
    console.log(formatSummary(report));
  }
  process.exitCode = report.unresolved > 0 ? 1 : 0;
} catch (error) {
  console.error(`reconcile could not run: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 3;
}
