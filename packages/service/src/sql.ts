/**
 * The services' own SQL on node-postgres, without Prisma's client in between: the outbox relay,
 * the event consumers and the transfer path issue only raw statements, and Prisma's client costs
 * ~1.8× the Node CPU of node-postgres per statement and ~3× per transaction (bench/saga-results.md,
 * 2026-12-03, where the profile found it at ~20 % of every subgraph's busy time).
 * Prisma keeps the schema, the migrations and the model queries of the resolvers.
 *
 * Values come back as Prisma's raw queries return them, so the same store code runs on either
 * (subgraphs/transactions/src/store.test.ts compares the two): int8 as BigInt, timestamps as Dates
 * in UTC, json as parsed values.
 */
import { createHash } from "node:crypto";
import pg from "pg";
import {
  ASYNCHRONOUS_COMMIT_SETTINGS,
  CUSTOM_PLAN_SETTINGS,
  GENERIC_PLAN_SETTINGS,
  INDEX_SCAN_SETTINGS,
  type SqlDatabase,
  type SqlExecutor,
  type SqlTransactionOptions,
} from "@vaultpay/events";
import { TRANSACTION_OPTIONS, pgPoolConfig, statementName } from "./db.ts";

const INT8 = 20;
const INT8_ARRAY = 1016;
const TIMESTAMP = 1114;
const TIMESTAMP_ARRAY = 1115;

const parseTextArray = (pg.types.getTypeParser as (oid: number) => (text: string) => Array<string | null>)(1009);

/** `timestamp` (without time zone) holds UTC here, as Prisma writes it; node-postgres would read it as local time. */
function utcTimestamp(text: string): Date {
  return new Date(`${text.replace(" ", "T")}Z`);
}

/** Prisma's conversions for the types the two drivers read differently; node-postgres's for the rest. */
function getTypeParser(oid: number, format?: "text" | "binary"): (text: string) => unknown {
  if (format === "binary") return pg.types.getTypeParser(oid, "binary");
  switch (oid) {
    case INT8:
      return (text) => BigInt(text);
    case INT8_ARRAY:
      return (text) => parseTextArray(text).map((value) => (value === null ? null : BigInt(value)));
    case TIMESTAMP:
      return utcTimestamp;
    case TIMESTAMP_ARRAY:
      return (text) => parseTextArray(text).map((value) => (value === null ? null : utcTimestamp(value)));
    default:
      return pg.types.getTypeParser(oid, "text");
  }
}

/** A parameter as Prisma sends it: BigInt as its digits, a Date as its UTC instant. */
function toParameter(value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(toParameter);
  return value;
}

async function run(client: pg.Pool | pg.PoolClient, text: string, values: unknown[]): Promise<pg.QueryResult> {
  return client.query({ text, values: values.map(toParameter), name: statementName(text) || undefined });
}

/** One transaction's statements, on the connection it holds; refused once the transaction ended. */
export class SqlTransaction implements SqlExecutor {
  /** Why statements are refused (the transaction ended), once it has. */
  ended: string | undefined;

  private readonly client: pg.PoolClient;
  /** Begun with preferIndexScans's settings (the transaction's `preferIndexScans` option). */
  readonly prefersIndexScans: boolean;

  constructor(client: pg.PoolClient, prefersIndexScans = false) {
    this.client = client;
    this.prefersIndexScans = prefersIndexScans;
  }

  /** Every SqlPool transaction begins with INDEX_SCAN_SETTINGS. */
  readonly walksIndexes = true;

  async $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): Promise<T> {
    return (await this.run(query, values)).rows as T;
  }

  async $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number> {
    return (await this.run(query, values)).rowCount ?? 0;
  }

  private run(query: string, values: unknown[]): Promise<pg.QueryResult> {
    if (this.ended !== undefined) return Promise.reject(new Error(`Transaction already closed: ${this.ended}`));
    return run(this.client, query, values);
  }
}

const listening = new WeakSet<pg.PoolClient>();

/**
 * A checked-out connection the server drops between two statements (a restart, a crash) emits
 * 'error' with nobody listening — the pool listens only to idle ones — and an unhandled 'error'
 * ends the process. Listened to once per connection: the transaction learns of the loss from its
 * next statement, which fails (and rolls it back); the pool discards the connection on release.
 */
function listenForErrors(client: pg.PoolClient): void {
  if (listening.has(client)) return;
  listening.add(client);
  client.on("error", () => undefined);
}

/** Settings as SET LOCAL statements, for BEGIN's round trip. */
const setLocal = (settings: Readonly<Record<string, string>>) =>
  Object.entries(settings).map(([name, value]) => `SET LOCAL ${name} = ${value}`);
/**
 * Every SqlPool transaction starts planned for index scans, in the same round trip as BEGIN (SET
 * LOCAL: the transaction's only, so a transaction-mode pooler is safe). Its statements are the
 * consumers', relays' and sweepers' lookups by key (`… WHERE transfer_id = ANY($1)`), all served
 * by an index; they are prepared, and a plan made with the statistics of a table that was small
 * (autovacuum analyzes it a minute or more later) scanned the whole table instead, so each lookup
 * cost more as the table grew (a claim's cached generic plan, which knows nothing of its LIMIT,
 * walked a whole primary key: claims keep custom plans, see below): fraud's findChecks went 1.9 → 9.7 ms
 * of PostgreSQL CPU per call from 3,000 to 12,000 checks, and 0.2–0.3 ms with these settings.
 * Like `preferIndexScans`, a penalty in the planner's costs, not a ban: a table without a usable
 * index is still scanned.
 */
/**
 * And its prepared statements are planned once per connection, for any values (a generic plan),
 * not again on every call: PostgreSQL's own choice (`plan_cache_mode = auto`) kept planning the
 * consumers' statements for each call's values, because a plan for the batch's real array sizes
 * looks cheaper than one for any size. Planning was a quarter of PostgreSQL's CPU at ~50
 * transfers/s (accounts' locking read 0.4–0.6 ms per call, fraud's check read 0.4–0.6 ms), and
 * the generic plans of these lookups by key are the same index scans (scans walk indexes here).
 * A statement that needs a plan for its values (a claim whose LIMIT is a parameter) asks for
 * preferIndexScans; an opening statement has no parameters and is prepared (preparedOpening).
 */
const BEGIN = ["BEGIN", ...setLocal(INDEX_SCAN_SETTINGS), ...setLocal(GENERIC_PLAN_SETTINGS)].join("; ");
/** BEGIN with custom plans instead: what preferIndexScans would set, without its round trip. */
const BEGIN_PREFERRING_INDEX_SCANS = ["BEGIN", ...setLocal(INDEX_SCAN_SETTINGS), ...setLocal(CUSTOM_PLAN_SETTINGS)].join("; ");
/** What `asynchronousCommit` adds to BEGIN. */
const ASYNCHRONOUS_COMMIT = setLocal(ASYNCHRONOUS_COMMIT_SETTINGS);

/**
 * Opening statements prepared on each connection (PREPARE, once; text → name). Sent as text in
 * BEGIN's simple query, the relay's claim was planned on every call: 0.2–0.25 ms of PostgreSQL's
 * CPU per claim, ~0.4 ms per transfer over the three relays in the saga benchmark's open loop
 * (bench/saga-results.md, tenth session). EXECUTE in the same simple query keeps the one round
 * trip and plans it once per connection; an opening has no parameters (its LIMIT is written into
 * it), so its one generic plan is the plan for its values. Dropped with their connection.
 */
const preparedOpenings = new WeakMap<pg.PoolClient, Map<string, string>>();

/** SQLSTATE of EXECUTE naming a statement the server does not hold (invalid_sql_statement_name). */
const MISSING_PREPARED_STATEMENT = "26000";
/** SQLSTATE of PREPARE under a name the server already holds (duplicate_prepared_statement). */
const DUPLICATE_PREPARED_STATEMENT = "42P05";

/** The name an opening is prepared under on every connection: its text's hash, so one name is one text. */
export function openingStatementName(text: string): string {
  return `vp_opening_${createHash("sha256").update(text).digest("hex").slice(0, 24)}`;
}

async function preparedOpening(client: pg.PoolClient, text: string): Promise<string> {
  let names = preparedOpenings.get(client);
  if (names === undefined) {
    names = new Map();
    preparedOpenings.set(client, names);
  }
  let name = names.get(text);
  if (name === undefined) {
    name = openingStatementName(text);
    // Already there (its name is its text's hash): the server connection outlived what this one knew.
    await client.query(`PREPARE ${name} AS ${text}`).catch((error: unknown) => {
      if (sqlState(error) !== DUPLICATE_PREPARED_STATEMENT) throw error;
    });
    names.set(text, name);
  }
  return name;
}

function sqlState(error: unknown): string | undefined {
  return (error as { code?: unknown } | null)?.code as string | undefined;
}

export interface SqlPoolOptions {
  /** Connections at most (each service's Prisma client has its own pool beside this one). */
  max?: number;
}

/**
 * A pool of connections for raw SQL, with Prisma's `$transaction(fn, { timeout })` contract: commit
 * when `fn` resolves, roll back when it throws; past `timeout` the transaction's connection is
 * closed (the server rolls it back) and `fn`'s later statements are refused. The wait for a
 * connection is the pool's (TRANSACTION_OPTIONS.maxWait), whatever a call's `maxWait` says.
 */
export class SqlPool implements SqlDatabase<SqlTransaction> {
  private readonly pool: pg.Pool;
  /** Whether openings are PREPAREd (see begin); false once a pooler was seen losing them. */
  private preparesOpenings = true;

  constructor(connectionString: string, options: SqlPoolOptions = {}) {
    this.pool = new pg.Pool({
      // The settings Prisma's pool shares (pgPoolConfig), then this pool's own.
      ...pgPoolConfig(connectionString),
      max: options.max ?? 10,
      connectionTimeoutMillis: TRANSACTION_OPTIONS.maxWait,
      types: { getTypeParser } as pg.CustomTypesConfig,
    });
    // An idle connection the server dropped (a restart) is removed by the pool; without a listener
    // its error would end the process.
    this.pool.on("error", () => undefined);
  }

  async $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): Promise<T> {
    return (await run(this.pool, query, values)).rows as T;
  }

  async $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number> {
    return (await run(this.pool, query, values)).rowCount ?? 0;
  }

  async $transaction<R>(fn: (tx: SqlTransaction, opened?: unknown[]) => Promise<R>, options: SqlTransactionOptions = {}): Promise<R> {
    const timeoutMs = options.timeout ?? TRANSACTION_OPTIONS.timeout;
    const client = await this.pool.connect();
    listenForErrors(client);
    const tx = new SqlTransaction(client, options.preferIndexScans === true);
    const timeout = new Error(`Transaction already closed: it ran longer than its timeout (${timeoutMs} ms)`);
    let timer: NodeJS.Timeout | undefined;
    try {
      const begun = await this.begin(client, tx, options);
      const opened = options.opening === undefined ? undefined : (begun as unknown as pg.QueryResult[]).at(-1)!.rows;
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(timeout), timeoutMs);
      });
      const result = await Promise.race([fn(tx, opened), expired]);
      tx.ended = "committing";
      await client.query("COMMIT");
      client.release();
      return result;
    } catch (error) {
      tx.ended = error === timeout ? "timed out" : "rolled back";
      if (error === timeout) {
        // A statement may still be running on it: closing the connection ends the transaction now.
        client.release(error as Error);
      } else {
        await client.query("ROLLBACK").then(
          () => client.release(),
          (rollbackError: Error) => client.release(rollbackError),
        );
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * One simple query: BEGIN, the settings and the opening statement (prepared); its rows are the
   * last result's. A prepared opening the server no longer holds (DEALLOCATE, DISCARD ALL, a
   * pooler's reset) is prepared again; missing again right after PREPARE, the PREPARE and the
   * EXECUTE went to different server connections (a pooler in transaction mode, which carries only
   * protocol-level prepared statements): from then on this pool sends openings as text, planned on
   * every call, as before they were prepared.
   */
  private async begin(client: pg.PoolClient, tx: SqlTransaction, options: SqlTransactionOptions): Promise<pg.QueryResult> {
    const settings = [
      tx.prefersIndexScans ? BEGIN_PREFERRING_INDEX_SCANS : BEGIN,
      ...(options.asynchronousCommit === true ? ASYNCHRONOUS_COMMIT : []),
    ];
    if (options.opening === undefined) return client.query(settings.join("; "));
    for (let attempt = 1; ; attempt++) {
      if (!this.preparesOpenings) return client.query([...settings, options.opening].join("; "));
      try {
        return await client.query([...settings, `EXECUTE ${await preparedOpening(client, options.opening)}`].join("; "));
      } catch (error) {
        if (sqlState(error) !== MISSING_PREPARED_STATEMENT) throw error;
        await client.query("ROLLBACK");
        preparedOpenings.delete(client);
        if (attempt >= 2) this.preparesOpenings = false;
      }
    }
  }

  async $disconnect(): Promise<void> {
    await this.pool.end();
  }
}
