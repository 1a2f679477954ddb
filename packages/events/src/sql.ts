/**
 * The slice of a Prisma client (or interactive transaction) the events package needs. Structural,
 * so any service's generated client fits without this package importing it.
 */
export interface SqlExecutor {
  $executeRawUnsafe(query: string, ...values: unknown[]): PromiseLike<number>;
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): PromiseLike<T>;
}

export interface SqlDatabase<Tx extends SqlExecutor = SqlExecutor> extends SqlExecutor {
  $transaction<R>(fn: (tx: Tx) => Promise<R>, options?: { maxWait?: number; timeout?: number }): Promise<R>;
}

/**
 * Transaction-scoped advisory locks on these keys, in one statement, taken in sorted order: every
 * holder of several takes them in one order, so two transactions cannot deadlock on them.
 * Released at commit or rollback.
 */
export async function lockKeys(tx: SqlExecutor, keys: readonly string[]): Promise<void> {
  await tx.$queryRawUnsafe(
    `SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM (SELECT k FROM unnest($1::text[]) AS k ORDER BY k) AS sorted`,
    [...new Set(keys)].sort(),
  );
}
