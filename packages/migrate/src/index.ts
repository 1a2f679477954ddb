export { SERVICES, type ServiceName, isServiceName } from "./services.ts";
export { serviceDatabaseUrl, ensureDatabase, dropDatabase } from "./database.ts";
export { deployMigrations, createMigration, migrationStatus, type MigrationStatus } from "./migrations.ts";
export { generateClients } from "./generate.ts";
