import { execFile } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withDatabase } from "./database.ts";
import { offlineCliEnv, PRISMA_CLI } from "./generate.ts";
import { createMigration, deployMigrations, dropDatabase, generateClients, migrationStatus, SERVICES, type ServiceName } from "./index.ts";
import { DEFAULT_PRISMA_ROOT } from "./services.ts";

const run = promisify(execFile);

// Full suite: a global setup provides it. Alone: DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
const serverUrl = process.env.DATABASE_URL ?? "";

const createdDatabases: string[] = [];
let tmp: string;

/** A database URL on the test server whose name no one else uses; dropped after the tests. */
function freshDatabaseUrl(): string {
  const url = withDatabase(serverUrl, `vaultpay_migrate_test_${randomUUID().replaceAll("-", "").slice(0, 16)}`);
  createdDatabases.push(url);
  return url;
}

/** A private copy of prisma/ to change; the shared events.prisma links stay relative, inside it. */
async function prismaCopy(): Promise<string> {
  const root = await fs.mkdtemp(path.join(tmp, "repo-"));
  const prismaRoot = path.join(root, "prisma");
  await fs.cp(DEFAULT_PRISMA_ROOT, prismaRoot, { recursive: true, verbatimSymlinks: true });
  return prismaRoot;
}

async function migrationNames(prismaRoot: string, service: ServiceName): Promise<string[]> {
  const entries = await fs.readdir(path.join(prismaRoot, service, "migrations"), { withFileTypes: true });
  return entries
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
}

async function query<T extends pg.QueryResultRow>(databaseUrl: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

interface MigrationRow {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
  applied_steps_count: number;
}

function appliedMigrations(databaseUrl: string): Promise<MigrationRow[]> {
  return query<MigrationRow>(
    databaseUrl,
    `SELECT migration_name, checksum, finished_at, rolled_back_at, applied_steps_count
       FROM _prisma_migrations ORDER BY migration_name`,
  );
}

/** Temporary databases this package makes for shadow and scratch use; none may outlive a call. */
async function temporaryDatabases(): Promise<string[]> {
  const rows = await query<{ datname: string }>(
    serverUrl,
    `SELECT datname FROM pg_database
      WHERE datname LIKE 'prisma\\_migrate\\_shadow\\_db\\_%' OR datname LIKE 'vaultpay\\_migrate\\_scratch\\_%'`,
  );
  return rows.map((row) => row.datname);
}

beforeAll(async () => {
  if (!serverUrl) throw new Error("set DATABASE_URL to a PostgreSQL server URL (superuser) to run these tests");
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), "vaultpay-migrate-"));
});

afterAll(async () => {
  await Promise.all(createdDatabases.map((url) => dropDatabase(url)));
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe("the committed schemas and migrations", () => {
  it("load through prisma/prisma.config.ts with the ordinary CLI, offline", { timeout: 60_000 }, async () => {
    for (const service of SERVICES) {
      const { stdout } = await run(process.execPath, [PRISMA_CLI, "validate", "--config", "prisma/prisma.config.ts"], {
        cwd: path.dirname(DEFAULT_PRISMA_ROOT),
        env: { ...offlineCliEnv(), PRISMA_SERVICE: service },
      });
      expect(stdout).toContain(`The schemas at prisma/${service} are valid`);
    }
  });

  it("deploy on an empty database creates the tables and records each migration with its sha256", { timeout: 60_000 }, async () => {
    for (const service of SERVICES) {
      const databaseUrl = freshDatabaseUrl(); // does not exist yet: deploy creates it
      const names = await migrationNames(DEFAULT_PRISMA_ROOT, service);
      expect(names.length).toBeGreaterThan(0);

      expect(await deployMigrations({ service, databaseUrl })).toEqual(names);

      const rows = await appliedMigrations(databaseUrl);
      expect(rows.map((row) => row.migration_name)).toEqual(names);
      for (const row of rows) {
        const file = path.join(DEFAULT_PRISMA_ROOT, service, "migrations", row.migration_name, "migration.sql");
        const sql = await fs.readFile(file);
        expect(row.checksum).toBe(createHash("sha256").update(sql).digest("hex"));
        expect(row.finished_at).toBeInstanceOf(Date);
        expect(row.rolled_back_at).toBeNull();
        expect(row.applied_steps_count).toBe(1);
      }

      const columns = await query<{ table_name: string; column_name: string }>(
        databaseUrl,
        `SELECT table_name, column_name FROM information_schema.columns
          WHERE table_schema = 'public' AND table_name IN ('outbox_event', 'processed_event')
          ORDER BY table_name, ordinal_position`,
      );
      expect(columns.map((column) => `${column.table_name}.${column.column_name}`)).toEqual([
        "outbox_event.seq",
        "outbox_event.id",
        "outbox_event.subject",
        "outbox_event.type",
        "outbox_event.payload",
        "outbox_event.created_at",
        "outbox_event.published_at",
        "processed_event.consumer",
        "processed_event.event_id",
        "processed_event.processed_at",
      ]);

      // Deploying again finds nothing to do, and status agrees.
      expect(await deployMigrations({ service, databaseUrl })).toEqual([]);
      expect(await appliedMigrations(databaseUrl)).toHaveLength(names.length);
      expect(await migrationStatus({ service, databaseUrl })).toEqual({
        databaseExists: true,
        pending: [],
        unknown: [],
        edited: [],
        failed: [],
      });
    }
  });
});

describe("deployMigrations", () => {
  it("two concurrent deploys on a fresh database both succeed and apply each migration once", { timeout: 30_000 }, async () => {
    const databaseUrl = freshDatabaseUrl();
    const names = await migrationNames(DEFAULT_PRISMA_ROOT, "transactions");

    const results = await Promise.all([
      deployMigrations({ service: "transactions", databaseUrl }),
      deployMigrations({ service: "transactions", databaseUrl }),
    ]);

    expect(results.flat().sort()).toEqual(names);
    expect((await appliedMigrations(databaseUrl)).map((row) => row.migration_name)).toEqual(names);
  });

  it("refuses a migration file edited after it was applied", { timeout: 30_000 }, async () => {
    const prismaRoot = await prismaCopy();
    const databaseUrl = freshDatabaseUrl();
    await deployMigrations({ service: "fraud", databaseUrl, prismaRoot });
    const [first] = await migrationNames(prismaRoot, "fraud");
    await fs.appendFile(path.join(prismaRoot, "fraud", "migrations", first!, "migration.sql"), "\n-- an afterthought\n");

    await expect(deployMigrations({ service: "fraud", databaseUrl, prismaRoot })).rejects.toThrow(
      `${first} was edited after being applied`,
    );
    expect((await migrationStatus({ service: "fraud", databaseUrl, prismaRoot })).edited).toEqual([first]);
  });

  it("reports a failing migration and refuses to deploy over it afterwards", { timeout: 30_000 }, async () => {
    const prismaRoot = await prismaCopy();
    const databaseUrl = freshDatabaseUrl();
    const broken = "29990101000000_broken";
    await fs.mkdir(path.join(prismaRoot, "audit", "migrations", broken));
    await fs.writeFile(
      path.join(prismaRoot, "audit", "migrations", broken, "migration.sql"),
      `CREATE TABLE "half_done" ("id" INTEGER);\nSELECT * FROM "no_such_table";\n`,
    );

    await expect(deployMigrations({ service: "audit", databaseUrl, prismaRoot })).rejects.toThrow(/no_such_table/);
    // Applied as one statement batch, like the native engine: the failing script left nothing behind.
    expect(await query(databaseUrl, `SELECT to_regclass('half_done') AS t`)).toEqual([{ t: null }]);
    const rows = await appliedMigrations(databaseUrl);
    expect(rows.find((row) => row.migration_name === broken)?.finished_at).toBeNull();

    await expect(deployMigrations({ service: "audit", databaseUrl, prismaRoot })).rejects.toThrow(`migration ${broken} failed earlier`);
  });
});

describe("createMigration", () => {
  it("writes the SQL for a new model, then nothing once the schema matches", { timeout: 60_000 }, async () => {
    const prismaRoot = await prismaCopy();
    const before = await migrationNames(prismaRoot, "accounts");
    const leftoversBefore = await temporaryDatabases();

    expect(await createMigration({ service: "accounts", name: "nothing", serverUrl, prismaRoot })).toBeNull();
    expect(await migrationNames(prismaRoot, "accounts")).toEqual(before);

    await fs.appendFile(
      path.join(prismaRoot, "accounts", "schema.prisma"),
      `\nmodel Widget {\n  id   String @id @db.Uuid\n  name String\n  @@map("widget")\n}\n`,
    );
    const created = await createMigration({ service: "accounts", name: "add_widget", serverUrl, prismaRoot });

    expect(created).toMatch(/^\d{14}_add_widget$/);
    expect(await migrationNames(prismaRoot, "accounts")).toEqual([...before, created]);
    const sql = await fs.readFile(path.join(prismaRoot, "accounts", "migrations", created!, "migration.sql"), "utf8");
    expect(sql).toContain(`CREATE TABLE "widget"`);
    expect(sql).not.toContain("outbox_event");
    expect(await fs.readFile(path.join(prismaRoot, "accounts", "migrations", "migration_lock.toml"), "utf8")).toContain(
      `provider = "postgresql"`,
    );
    expect(await temporaryDatabases()).toEqual(leftoversBefore);

    expect(await createMigration({ service: "accounts", name: "again", serverUrl, prismaRoot })).toBeNull();

    const databaseUrl = freshDatabaseUrl();
    expect(await deployMigrations({ service: "accounts", databaseUrl, prismaRoot })).toEqual([...before, created]);
    expect(await query(databaseUrl, `SELECT to_regclass('widget')::text AS t`)).toEqual([{ t: "widget" }]);
  });
});

describe("generateClients", () => {
  it("generates a client that reads and writes through @prisma/adapter-pg", { timeout: 60_000 }, async () => {
    // Generated into a copy, so the repository's clients (which other tests import) are left alone.
    // The copy's output path mirrors the repository's; a link to the subgraph's node_modules lets
    // the generated code resolve @prisma/client as it does there.
    const prismaRoot = await prismaCopy();
    const subgraph = path.join(path.dirname(prismaRoot), "subgraphs", "audit");
    await fs.mkdir(subgraph, { recursive: true });
    const repoSubgraph = path.join(DEFAULT_PRISMA_ROOT, "..", "subgraphs", "audit");
    await fs.symlink(path.join(repoSubgraph, "node_modules"), path.join(subgraph, "node_modules"));

    await generateClients({ services: ["audit"], prismaRoot });

    const databaseUrl = freshDatabaseUrl();
    await deployMigrations({ service: "audit", databaseUrl, prismaRoot });
    const { PrismaClient }: typeof import("../../../subgraphs/audit/src/generated/prisma/client.ts") = await import(
      path.join(subgraph, "src", "generated", "prisma", "client.ts")
    );
    const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: databaseUrl }) });
    try {
      const id = "0192d6a0-7b8c-7def-8123-456789abcdef";
      const payload = { id, type: "audit.recorded", data: { n: 1 } };
      const created = await prisma.outboxEvent.create({
        data: { id, subject: "vaultpay.audit.recorded", type: "audit.recorded", payload },
      });
      expect(created.seq).toBe(1n);
      expect(created.publishedAt).toBeNull();

      const [row] = await prisma.$queryRawUnsafe<{ id: string; payload: unknown }[]>(
        `SELECT id::text AS id, payload FROM outbox_event WHERE published_at IS NULL`,
      );
      expect(row).toEqual({ id, payload });
      expect(await prisma.processedEvent.count()).toBe(0);
    } finally {
      await prisma.$disconnect();
    }
  });
});
