/**
 * The same money movement as the saga, as raw SQL on the same PostgreSQL server in the same run:
 * lock both rows in id order, debit, credit, two journal rows, commit (durable commits, as the
 * services run). The saga benchmark prints its throughput beside this baseline. Without the
 * server's group commit (commit_delay 0 for its sessions): a loop of one-row transactions is
 * quicker without the wait (~5 % in the runs of 2026-12-06), and the baseline stays what it was.
 */
import { randomInt } from "node:crypto";
import pg from "pg";
import { ownCpuPerUnit, processCpuSeconds } from "./tools/process-cpu.ts";

export interface RawSqlResult {
  transfersPerSecond: number;
  transfers: number;
  seconds: number;
  /**
   * Milliseconds of CPU per raw transfer: PostgreSQL's backends (/proc) and this process's client
   * (node-postgres), for the same fixed work in every run. Whether it tracks the machine's drift
   * is still open: in the A/A run of 2026-12-06 it moved the other way from the stack's.
   */
  cpuMsPerTransfer: { postgres: number; client: number };
}

export async function rawSqlBaseline(
  serverUrl: string,
  options: { clients: number; seconds: number; accounts: number },
): Promise<RawSqlResult> {
  const database = `bench_raw_${process.pid}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${database}`);
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  url.searchParams.set("options", "-c synchronous_commit=on -c commit_delay=0");
  const pool = new pg.Pool({ connectionString: url.toString(), max: options.clients });
  try {
    await pool.query(`
      CREATE TABLE account (id int PRIMARY KEY, balance_minor bigint NOT NULL CHECK (balance_minor >= 0));
      CREATE TABLE journal (seq bigserial PRIMARY KEY, account_id int NOT NULL REFERENCES account(id), transfer_id int NOT NULL, amount_minor bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
      INSERT INTO account SELECT g, 1000000000 FROM generate_series(1, ${options.accounts}) g;`);
    let transfers = 0;
    let next = 0;
    const deadline = Date.now() + options.seconds * 1000;
    const startedAt = performance.now();
    const [pgBefore, clientBefore] = [processCpuSeconds([database]).postgres ?? 0, process.cpuUsage()];
    await Promise.all(
      Array.from({ length: options.clients }, async () => {
        const client = await pool.connect();
        try {
          while (Date.now() < deadline) {
            const from = 1 + randomInt(options.accounts);
            const to = 1 + ((from + randomInt(options.accounts - 1)) % options.accounts);
            const transferId = next++;
            await client.query("BEGIN");
            await client.query(`SELECT id FROM account WHERE id IN ($1, $2) ORDER BY id FOR UPDATE`, [from, to]);
            await client.query(`UPDATE account SET balance_minor = balance_minor - 1000 WHERE id = $1`, [from]);
            await client.query(`UPDATE account SET balance_minor = balance_minor + 1000 WHERE id = $1`, [to]);
            await client.query(`INSERT INTO journal (account_id, transfer_id, amount_minor) VALUES ($1, $3, -1000), ($2, $3, 1000)`, [
              from,
              to,
              transferId,
            ]);
            await client.query("COMMIT");
            transfers++;
          }
        } finally {
          client.release();
        }
      }),
    );
    const seconds = (performance.now() - startedAt) / 1000;
    const client = ownCpuPerUnit(clientBefore, transfers);
    const cpuMsPerTransfer = {
      postgres: (((processCpuSeconds([database]).postgres ?? 0) - pgBefore) * 1000) / transfers,
      client,
    };
    return { transfersPerSecond: transfers / seconds, transfers, seconds, cpuMsPerTransfer };
  } finally {
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${database}`);
    await admin.end();
  }
}
