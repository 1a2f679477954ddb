import { prismaClientOptions } from "@vaultpay/service";
import { PrismaClient, type Prisma } from "./generated/prisma/client.ts";

export type Db = PrismaClient;
/** What a transaction callback (and an event handler) receives. */
export type Tx = Prisma.TransactionClient;

/** The accounts service's own database, through the pg driver adapter (Prisma 7, no engine binary). */
export function createDb(databaseUrl: string): Db {
  return new PrismaClient(prismaClientOptions(databaseUrl));
}
