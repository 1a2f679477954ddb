import { PrismaPg } from "@prisma/adapter-pg";
import { PG_ADAPTER_OPTIONS, pgPoolConfig, TRANSACTION_OPTIONS } from "@vaultpay/service";
import { PrismaClient, type Prisma } from "./generated/prisma/client.ts";

export type Db = PrismaClient;
/** What a transaction callback (and an event handler) receives. */
export type Tx = Prisma.TransactionClient;

/** The fraud service's own database, through the pg driver adapter (Prisma 7, no engine binary). */
export function createDb(databaseUrl: string): Db {
  return new PrismaClient({
    adapter: new PrismaPg(pgPoolConfig(databaseUrl), PG_ADAPTER_OPTIONS),
    transactionOptions: TRANSACTION_OPTIONS,
  });
}
