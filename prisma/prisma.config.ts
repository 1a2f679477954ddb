// Prisma CLI config for one service's schema, chosen by PRISMA_SERVICE, so the ordinary CLI works
// wherever its engine binary can be had, e.g.
//   PRISMA_SERVICE=auth DATABASE_URL=postgres://…/vaultpay_auth pnpm exec prisma migrate deploy --config prisma/prisma.config.ts
// In this repo generate and migrations go through scripts/prisma.ts (offline, see @vaultpay/migrate).
import { defineConfig } from "prisma/config";
import { isServiceName, SERVICES, servicePaths } from "../packages/migrate/src/services.ts";

const service = process.env.PRISMA_SERVICE ?? "";
if (!isServiceName(service)) {
  throw new Error(`PRISMA_SERVICE must be one of ${SERVICES.join(", ")} (got "${service}")`);
}
const { schemaDir, migrationsDir } = servicePaths(service);

export default defineConfig({
  schema: schemaDir,
  migrations: { path: migrationsDir },
  // Not env("DATABASE_URL"): that throws when unset, and generate needs no database.
  datasource: { url: process.env.DATABASE_URL },
});
