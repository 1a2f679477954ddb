// Prisma clients and migrations for every service, offline (see packages/migrate).
//   node scripts/prisma.ts generate              prisma generate for each service (also postinstall)
//   node scripts/prisma.ts new <service> <name>  write the next migration of a service from its schema
//   node scripts/prisma.ts deploy [service…]     apply pending migrations (all services by default)
//   node scripts/prisma.ts status                pending / edited / failed migrations per service
// DATABASE_URL names the PostgreSQL server (any database on it); each service gets vaultpay_<service>.
// Without it, `new` diffs on a throwaway embedded PostgreSQL, and deploy/status use the local
// stack's server (postgres://postgres:postgres@127.0.0.1:54329, started by `pnpm start`).
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startPostgres } from "@vaultpay/stack";
import {
  createMigration,
  deployMigrations,
  generateClients,
  isServiceName,
  migrationStatus,
  SERVICES,
  type ServiceName,
  serviceDatabaseUrl,
} from "@vaultpay/migrate";

const serverUrl = process.env.DATABASE_URL ?? "postgres://postgres:postgres@127.0.0.1:54329/postgres";
const usage = "usage: prisma.ts generate | new <service> <name> | deploy [service…] | status";

function serviceName(name: string): ServiceName {
  if (!isServiceName(name)) throw new Error(`unknown service "${name}" (one of ${SERVICES.join(", ")})`);
  return name;
}

async function main(command: string | undefined, args: string[]): Promise<void> {
  switch (command) {
    case "generate":
      await generateClients();
      console.log(`generated Prisma clients: ${SERVICES.join(", ")}`);
      return;
    case "new": {
      const [service, name] = args;
      if (!service || !name || args.length > 2) throw new Error(usage);
      // The diff replays the migrations on scratch databases; any empty server will do.
      const scratchDir = process.env.DATABASE_URL ? undefined : mkdtempSync(path.join(os.tmpdir(), "vaultpay-migrate-"));
      const scratch = scratchDir ? await startPostgres(scratchDir, false, 0) : undefined;
      try {
        const created = await createMigration({ service: serviceName(service), name, serverUrl: scratch?.url ?? serverUrl });
        if (created) console.log(`${service}: wrote prisma/${service}/migrations/${created}/migration.sql`);
      } finally {
        await scratch?.postgres.stop();
        if (scratchDir) rmSync(scratchDir, { recursive: true, force: true });
      }
      return;
    }
    case "deploy":
      for (const service of args.length > 0 ? args.map(serviceName) : SERVICES) {
        const applied = await deployMigrations({ service, databaseUrl: serviceDatabaseUrl(serverUrl, service) });
        console.log(`${service}: ${applied.length > 0 ? `applied ${applied.join(", ")}` : "up to date"}`);
      }
      return;
    case "status":
      if (args.length > 0) throw new Error(usage);
      for (const service of SERVICES) {
        const status = await migrationStatus({ service, databaseUrl: serviceDatabaseUrl(serverUrl, service) });
        const problems = [
          !status.databaseExists && "no database yet",
          status.pending.length > 0 && `pending: ${status.pending.join(", ")}`,
          status.edited.length > 0 && `edited after being applied: ${status.edited.join(", ")}`,
          status.failed.length > 0 && `failed: ${status.failed.join(", ")}`,
          status.unknown.length > 0 && `applied but not in the migrations folder: ${status.unknown.join(", ")}`,
        ].filter(Boolean);
        console.log(`${service}: ${problems.length > 0 ? problems.join("; ") : "up to date"}`);
      }
      return;
    default:
      throw new Error(usage);
  }
}

main(process.argv[2], process.argv.slice(3)).catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
