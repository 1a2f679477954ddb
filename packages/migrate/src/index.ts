export { SERVICES, type ServiceName, isServiceName } from "./services.ts";
export { serviceDatabaseUrl, ensureDatabase, dropDatabase, withDatabase } from "./database.ts";
export { deployMigrations, createMigration, migrationStatus, type MigrationStatus } from "./migrations.ts";
export { generateClients } from "./generate.ts";
