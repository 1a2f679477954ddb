/**
 * Prisma's schema engine (the one behind `prisma migrate`) as WebAssembly, talking to PostgreSQL
 * through @prisma/adapter-pg, so migrations need no native engine binary (none can be downloaded
 * here). This is how Prisma's own `wasmSchemaEngineLoader` wires it: the .wasm that ships inside
 * the prisma CLI package, bound to the JS glue of @prisma/schema-engine-wasm.
 */
import fs from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { PrismaPg } from "@prisma/adapter-pg";
import type { SchemaContainer, SchemaEngine, SchemaFilter } from "@prisma/schema-engine-wasm/schema_engine_bg";
import * as glue from "@prisma/schema-engine-wasm/schema_engine_bg";
import pg from "pg";
import { createTemporaryDatabase, dropDatabase } from "./database.ts";

const require = createRequire(import.meta.url);

/** The slice of the WebAssembly global used here, which the project's TS libs (ES2024, no DOM) leave undeclared. */
declare const WebAssembly: {
  compile(bytes: Uint8Array): Promise<object>;
  instantiate(module: object, imports: Record<string, object>): Promise<{ exports: Record<string, unknown> }>;
  RuntimeError: new () => Error;
};

/** No tables or enums are managed outside Prisma (prisma.config.ts `tables.external`/`enums.external`). */
export const NO_FILTER: SchemaFilter = { externalTables: [], externalEnums: [] };

/** The advisory lock Prisma's engine takes around `migrate deploy`; taking the same one interlocks with it. */
const MIGRATE_LOCK_KEY = 72707369;

// PostgreSQL type OIDs: the one-byte internal `"char"` and text.
const OID_CHAR = 18;
const OID_TEXT = 25;

type PgAdapter = Awaited<ReturnType<PrismaPg["connect"]>>;

/** The slice of @prisma/driver-adapter-utils' error registry used to recover errors raised in JS. */
interface ErrorRegistry {
  consumeError(id: number): { error: unknown } | undefined;
}

/**
 * The binder that wraps a driver adapter factory into the result-returning shape the engine calls.
 * Taken from @prisma/adapter-pg's own dependency so it always matches the adapter's version (pnpm
 * does not let this package import a dependency of a dependency by name).
 */
const { bindMigrationAwareSqlAdapterFactory } = createRequire(require.resolve("@prisma/adapter-pg"))("@prisma/driver-adapter-utils") as {
  bindMigrationAwareSqlAdapterFactory(factory: AdapterFactory): object & { errorRegistry: ErrorRegistry };
};

let engineClass: Promise<typeof SchemaEngine> | undefined;

/**
 * Instantiates the wasm once per process: the glue keeps the instance in module state, and a second
 * instantiation would replace it under engines already running.
 */
function loadEngineClass(): Promise<typeof SchemaEngine> {
  engineClass ??= (async () => {
    // The CLI's own build of the engine (the exact version its native binary would be), not the
    // npm package's .wasm, which is a different engine commit; both share the glue's imports.
    const wasmPath = path.join(path.dirname(require.resolve("prisma/package.json")), "build", "schema_engine_bg.wasm");
    const module = await WebAssembly.compile(await fs.readFile(wasmPath));
    const instance = await WebAssembly.instantiate(module, { "./schema_engine_bg.js": unrefTimers(glue) }).catch((error: Error) => {
      throw new Error(
        `${wasmPath} does not fit the JS glue of @prisma/schema-engine-wasm (${error.message}): ` +
          "upgrade that package together with prisma",
        { cause: error },
      );
    });
    panics.PRISMA_WASM_PANIC_REGISTRY ??= {
      set_message(message) {
        this.message = message;
      },
    };
    glue.__wbg_set_wasm(instance.exports);
    (instance.exports.__wbindgen_start as () => void)();
    return glue.SchemaEngine;
  })();
  return engineClass;
}

/**
 * The engine arms a timer for each lock wait (10 s) and has no import to cancel it, so the timer
 * held the process open that long after the work was done. Unref'd timers still fire while the
 * process lives; during a session the engine's open connection keeps it alive anyway.
 */
function unrefTimers(imports: typeof glue): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(imports).map(([name, value]) =>
      name.startsWith("__wbg_setTimeout_")
        ? [name, (callback: () => void, ms: number) => setTimeout(callback, ms >>> 0).unref()]
        : [name, value],
    ),
  );
}

/**
 * Where the engine reports a Rust panic before it surfaces as a bare "unreachable" RuntimeError.
 * Prisma's client runtime installs its own registry of the same shape when it loads.
 */
interface PanicRegistry {
  message?: string;
  set_message(message: string): void;
}
const panics = globalThis as { PRISMA_WASM_PANIC_REGISTRY?: PanicRegistry };

/**
 * The describer's query for CHECK and exclusion constraints. The wasm engine (7.10) panics
 * ("unreachable") when it gets a CHECK constraint back, which the native engine only notes: Prisma
 * schemas cannot express CHECKs, so they never take part in a diff. Hiding them from the engine
 * keeps diffs identical while migrations may add CHECKs by hand (accounts, transactions do).
 */
function isCheckAndExclusionConstraintQuery(config: pg.QueryConfig | string): boolean {
  const text = typeof config === "string" ? config : config.text;
  return text.includes("pg_get_constraintdef") && text.includes("constraint_type");
}

/**
 * A PrismaPg connection adjusted for the schema engine, which the adapter was not built around:
 * - one pooled connection, kept open: the engine takes its migration lock with a session-level
 *   advisory lock, which must stay on the connection that then runs the migration;
 * - CHECK constraints hidden from the describer (see isCheckAndExclusionConstraintQuery);
 * - `"char"` columns reported as text: the engine's catalog queries return some (pg_constraint.contype…)
 *   and PrismaPg 7.10 rejects the type, although its text form is just the character;
 * - scripts sent whole, as one simple-protocol query, like the native engine does: PrismaPg splits on
 *   every ";" (breaking literals and function bodies) and runs the pieces as separate transactions,
 *   whereas one multi-statement query applies a migration atomically.
 */
async function connect(databaseUrl: string): Promise<PgAdapter> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1, idleTimeoutMillis: 0 });
  const query = pool.query.bind(pool) as (config: pg.QueryConfig) => Promise<pg.QueryResult | pg.QueryResult[]>;
  pool.query = (async (config: pg.QueryConfig) => {
    const result = await query(config);
    for (const { fields } of [result].flat()) {
      for (const field of fields) if (field.dataTypeID === OID_CHAR) field.dataTypeID = OID_TEXT;
    }
    if (isCheckAndExclusionConstraintQuery(config)) {
      // PrismaPg asks for rows as arrays: find the column by name.
      for (const part of [result].flat()) {
        const column = part.fields.findIndex((field) => field.name === "constraint_type");
        part.rows = part.rows.filter((row: unknown[]) => row[column] !== "c");
        part.rowCount = part.rows.length;
      }
    }
    return result;
  }) as typeof pool.query;

  const adapter = await new PrismaPg(pool, { disposeExternalPool: true }).connect();
  // executeRaw with no arguments goes out as a simple query, and keeps PrismaPg's error mapping.
  adapter.executeScript = async (script) => {
    await adapter.executeRaw({ sql: script, args: [], argTypes: [] });
  };
  return adapter;
}

/** The driver adapter factory handed to the engine (a SqlMigrationAwareDriverAdapterFactory). */
class AdapterFactory {
  readonly provider = "postgres";
  readonly adapterName = "@prisma/adapter-pg";
  /** Connections the engine opened and may not dispose itself. */
  private readonly open = new Set<PgAdapter>();
  /** The engine's connection to `databaseUrl`, opened once when the engine starts. */
  private main: PgAdapter | undefined;

  private readonly databaseUrl: string;

  constructor(databaseUrl: string) {
    this.databaseUrl = databaseUrl;
  }

  async connect(): Promise<PgAdapter> {
    this.main = this.track(await connect(this.databaseUrl));
    return this.main;
  }

  /**
   * Takes the engine's migration lock ahead of it, on its own connection, so that checks made
   * before `applyMigrations` are already under the lock; the engine's call then re-enters it.
   */
  async lockMigrations(): Promise<void> {
    if (!this.main) throw new Error("the schema engine has not connected yet");
    await this.main.executeScript(`SELECT pg_advisory_lock(${MIGRATE_LOCK_KEY})`);
  }

  /**
   * A fresh empty database on the same server, dropped when the engine disposes of it. (PrismaPg's
   * own would connect to the main database again: a connection string overrides its `database`.)
   */
  async connectToShadowDb(): Promise<PgAdapter> {
    const shadowUrl = await createTemporaryDatabase(this.databaseUrl, "prisma_migrate_shadow_db");
    const connected = await connect(shadowUrl).catch(async (error: unknown) => {
      await dropDatabase(shadowUrl);
      throw error;
    });
    const adapter = this.track(connected);
    const dispose = adapter.dispose.bind(adapter);
    adapter.dispose = async () => {
      try {
        await dispose();
      } finally {
        await dropDatabase(shadowUrl);
      }
    };
    return adapter;
  }

  private track(adapter: PgAdapter): PgAdapter {
    this.open.add(adapter);
    const dispose = adapter.dispose.bind(adapter);
    adapter.dispose = async () => {
      this.open.delete(adapter);
      await dispose();
    };
    return adapter;
  }

  async close(): Promise<void> {
    await Promise.all([...this.open].map((adapter) => adapter.dispose()));
  }
}

export interface EngineSession {
  /**
   * Runs engine calls, turning their errors into readable ones. The callback must call methods on
   * the engine directly (`engine.applyMigrations(…)`): a detached method loses its wasm binding.
   */
  run<T>(call: (engine: SchemaEngine) => Promise<T>): Promise<T>;
  /** Takes Prisma's migration lock on the engine's connection, until the session closes. */
  lockMigrations(): Promise<void>;
}

/**
 * Starts an engine on `databaseUrl` for the duration of `use`, then frees it and closes every
 * connection it opened (which also releases the migration lock).
 */
export async function withEngine<T>(
  databaseUrl: string,
  /** The service's schema files; not empty (the engine takes none, or some). */
  schemaFiles: SchemaContainer[],
  use: (session: EngineSession) => Promise<T>,
): Promise<T> {
  const SchemaEngineClass = await loadEngineClass();
  const factory = new AdapterFactory(databaseUrl);
  const bound = bindMigrationAwareSqlAdapterFactory(factory);
  const translate = (error: unknown) => engineError(error, bound.errorRegistry);
  try {
    const engine = await SchemaEngineClass.new(
      { datamodels: schemaFiles.map((file) => [file.path, file.content]) },
      // The engine's tracing log (JSON lines); its errors reach us as rejections anyway.
      () => {},
      bound,
    ).catch((error: unknown) => {
      throw translate(error);
    });
    try {
      return await use({
        run: (call) =>
          call(engine).catch((error: unknown) => {
            throw translate(error);
          }),
        lockMigrations: () => factory.lockMigrations(),
      });
    } finally {
      try {
        engine.free();
      } catch {
        // Only after a panic, which left the engine borrowed: the panic is the error to report.
      }
    }
  } finally {
    await factory.close();
  }
}

/**
 * Readable engine errors: without the engine's tracing spans ("   0: sql_schema_connector::…",
 * kept in `cause`), with the original of a failure raised in JS, which the engine names only by
 * registry id ("External error id#3"), and with Prisma's code for user-facing errors (P3009…).
 */
function engineError(error: unknown, registry: ErrorRegistry): Error {
  if (error instanceof WebAssembly.RuntimeError) {
    const reason = panics.PRISMA_WASM_PANIC_REGISTRY?.message ?? error.message;
    return new Error(`Prisma schema engine panicked: ${reason}`, { cause: error });
  }
  if (!(error instanceof Error)) return new Error(String(error));
  const message = error.message.split(/\n\s+0: /)[0]!;
  const external = /External error id#(\d+)/.exec(message);
  const original = external ? registry.consumeError(Number(external[1]))?.error : undefined;
  if (original !== undefined) {
    return new Error(`${message}: ${original instanceof Error ? original.message : String(original)}`, { cause: original });
  }
  const code = "code" in error && typeof error.code === "string" ? `${error.code}: ` : "";
  return new Error(code + message, { cause: error });
}
