import path from "node:path";

/** Every service that owns a database, one Prisma schema each under prisma/<service>/. */
export const SERVICES = ["auth", "accounts", "transactions", "fraud", "audit"] as const;

export type ServiceName = (typeof SERVICES)[number];

export function isServiceName(name: string): name is ServiceName {
  return (SERVICES as readonly string[]).includes(name);
}

/** The repository's prisma/ folder; tests pass a copy of it instead. */
export const DEFAULT_PRISMA_ROOT = path.resolve(import.meta.dirname, "../../../prisma");

/** Where one service's schema files and migrations live. */
export function servicePaths(service: ServiceName, prismaRoot = DEFAULT_PRISMA_ROOT) {
  const schemaDir = path.join(prismaRoot, service);
  return { schemaDir, migrationsDir: path.join(schemaDir, "migrations") };
}
