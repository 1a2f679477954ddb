-- CreateEnum
CREATE TYPE "AccountType" AS ENUM ('SAVINGS', 'CURRENT');

-- CreateEnum
CREATE TYPE "AccountStatus" AS ENUM ('ACTIVE', 'FROZEN', 'CLOSED');

-- CreateEnum
CREATE TYPE "JournalKind" AS ENUM ('DEPOSIT', 'DEBIT', 'CREDIT', 'REFUND');

-- CreateEnum
CREATE TYPE "SagaStep" AS ENUM ('DEBIT', 'CREDIT', 'REFUND');

-- CreateTable
CREATE TABLE "account" (
    "id" UUID NOT NULL,
    "user_id" TEXT NOT NULL,
    "type" "AccountType" NOT NULL,
    "currency" CHAR(3) NOT NULL,
    "status" "AccountStatus" NOT NULL DEFAULT 'ACTIVE',
    "status_reason" TEXT,
    "balance_minor" BIGINT NOT NULL DEFAULT 0,
    "number_encrypted" TEXT NOT NULL,
    "number_key_id" TEXT NOT NULL,
    "number_blind_index" TEXT NOT NULL,
    "number_last4" CHAR(4) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "account_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "journal_entry" (
    "seq" BIGSERIAL NOT NULL,
    "account_id" UUID NOT NULL,
    "kind" "JournalKind" NOT NULL,
    "transfer_id" TEXT,
    "deposit_id" UUID,
    "amount_minor" BIGINT NOT NULL,
    "balance_after_minor" BIGINT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "journal_entry_pkey" PRIMARY KEY ("seq")
);

-- CreateTable
CREATE TABLE "deposit" (
    "id" UUID NOT NULL,
    "idempotency_key" TEXT NOT NULL,
    "account_id" UUID NOT NULL,
    "amount_minor" BIGINT NOT NULL,
    "requested_by" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "deposit_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "saga_decision" (
    "transfer_id" TEXT NOT NULL,
    "step" "SagaStep" NOT NULL,
    "account_id" TEXT NOT NULL,
    "amount_minor" BIGINT NOT NULL,
    "rejection" TEXT,
    "decided_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "saga_decision_pkey" PRIMARY KEY ("transfer_id","step")
);

-- CreateIndex
CREATE UNIQUE INDEX "account_number_blind_index_key" ON "account"("number_blind_index");

-- CreateIndex
CREATE INDEX "account_number_key_id_idx" ON "account"("number_key_id");

-- CreateIndex
CREATE UNIQUE INDEX "account_user_id_type_key" ON "account"("user_id", "type");

-- CreateIndex
CREATE UNIQUE INDEX "journal_entry_deposit_id_key" ON "journal_entry"("deposit_id");

-- CreateIndex
CREATE INDEX "journal_entry_account_id_seq_idx" ON "journal_entry"("account_id", "seq");

-- CreateIndex
CREATE UNIQUE INDEX "journal_entry_transfer_id_kind_account_id_key" ON "journal_entry"("transfer_id", "kind", "account_id");

-- CreateIndex
CREATE UNIQUE INDEX "deposit_idempotency_key_key" ON "deposit"("idempotency_key");

-- AddForeignKey
ALTER TABLE "journal_entry" ADD CONSTRAINT "journal_entry_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- AddForeignKey
ALTER TABLE "journal_entry" ADD CONSTRAINT "journal_entry_deposit_id_fkey" FOREIGN KEY ("deposit_id") REFERENCES "deposit"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- AddForeignKey
ALTER TABLE "deposit" ADD CONSTRAINT "deposit_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- ---------------------------------------------------------------------------------------------
-- Appended by hand to the generated migration, before it was ever applied: rules Prisma's schema
-- language cannot express. The database itself refuses what must never happen, whatever the code.
-- ---------------------------------------------------------------------------------------------

-- A balance is never negative: the last guard behind the conditional debit.
ALTER TABLE "account" ADD CONSTRAINT "account_balance_minor_nonnegative" CHECK ("balance_minor" >= 0);
ALTER TABLE "account" ADD CONSTRAINT "account_currency_iso4217" CHECK ("currency" ~ '^[A-Z]{3}$');
ALTER TABLE "account" ADD CONSTRAINT "account_number_last4_digits" CHECK ("number_last4" ~ '^[0-9]{4}$');
-- A ciphertext, never a plaintext number, in the number column.
ALTER TABLE "account" ADD CONSTRAINT "account_number_encrypted_sealed" CHECK ("number_encrypted" LIKE 'v1.%');

ALTER TABLE "deposit" ADD CONSTRAINT "deposit_amount_minor_positive" CHECK ("amount_minor" > 0);

-- A journal row says which money moved: DEPOSIT rows name their deposit, saga rows their transfer;
-- DEBIT takes money out (negative), the others put it in (positive); no row leaves a negative balance.
ALTER TABLE "journal_entry" ADD CONSTRAINT "journal_entry_source" CHECK (
  ("kind" = 'DEPOSIT' AND "deposit_id" IS NOT NULL AND "transfer_id" IS NULL)
  OR ("kind" <> 'DEPOSIT' AND "transfer_id" IS NOT NULL AND "deposit_id" IS NULL)
);
ALTER TABLE "journal_entry" ADD CONSTRAINT "journal_entry_amount_sign" CHECK (
  ("kind" = 'DEBIT' AND "amount_minor" < 0) OR ("kind" <> 'DEBIT' AND "amount_minor" > 0)
);
ALTER TABLE "journal_entry" ADD CONSTRAINT "journal_entry_balance_after_nonnegative" CHECK ("balance_after_minor" >= 0);

-- Money movements are immutable: corrections are new rows, never edits. Deposits too (the journal
-- points at them, and an edited amount would break "same key, same body").
CREATE FUNCTION "refuse_change_to_append_only"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER "journal_entry_append_only" BEFORE UPDATE OR DELETE ON "journal_entry"
  FOR EACH ROW EXECUTE FUNCTION "refuse_change_to_append_only"();
CREATE TRIGGER "journal_entry_no_truncate" BEFORE TRUNCATE ON "journal_entry"
  FOR EACH STATEMENT EXECUTE FUNCTION "refuse_change_to_append_only"();
CREATE TRIGGER "deposit_append_only" BEFORE UPDATE OR DELETE ON "deposit"
  FOR EACH ROW EXECUTE FUNCTION "refuse_change_to_append_only"();
CREATE TRIGGER "deposit_no_truncate" BEFORE TRUNCATE ON "deposit"
  FOR EACH STATEMENT EXECUTE FUNCTION "refuse_change_to_append_only"();
