-- CreateEnum
CREATE TYPE "TransferStatus" AS ENUM ('PENDING', 'DEBITED', 'COMPLETED', 'FAILED', 'REJECTED');

-- CreateEnum
CREATE TYPE "SagaStep" AS ENUM ('DEBIT', 'FRAUD', 'CREDIT', 'REFUND', 'NONE');

-- CreateTable
CREATE TABLE "transfer" (
    "id" UUID NOT NULL,
    "user_id" TEXT NOT NULL,
    "from_account_id" TEXT NOT NULL,
    "to_account_id" TEXT NOT NULL,
    "to_masked_number" TEXT NOT NULL,
    "amount_minor" BIGINT NOT NULL,
    "currency" TEXT NOT NULL,
    "note" TEXT,
    "status" "TransferStatus" NOT NULL,
    "failure_reason" TEXT,
    "idempotency_key" TEXT NOT NULL,
    "request_hash" TEXT NOT NULL,
    "request_device_id" TEXT,
    "session_device_id" TEXT NOT NULL,
    "correlation_id" TEXT NOT NULL,
    "step" "SagaStep" NOT NULL,
    "step_attempts" INTEGER NOT NULL DEFAULT 1,
    "step_deadline_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "transfer_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "transfer_status_change" (
    "seq" BIGSERIAL NOT NULL,
    "transfer_id" UUID NOT NULL,
    "status" "TransferStatus" NOT NULL,
    "reason" TEXT,
    "changed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "transfer_status_change_pkey" PRIMARY KEY ("seq")
);

-- CreateTable
CREATE TABLE "account_directory" (
    "account_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "currency" TEXT NOT NULL,
    "masked_number" TEXT NOT NULL,
    "number_blind_index" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "account_directory_pkey" PRIMARY KEY ("account_id")
);

-- CreateIndex
CREATE INDEX "transfer_user_id_created_at_id_idx" ON "transfer"("user_id", "created_at" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "transfer_step_deadline_at_idx" ON "transfer"("step_deadline_at");

-- CreateIndex
CREATE UNIQUE INDEX "transfer_user_id_idempotency_key_key" ON "transfer"("user_id", "idempotency_key");

-- CreateIndex
CREATE UNIQUE INDEX "transfer_status_change_transfer_id_status_key" ON "transfer_status_change"("transfer_id", "status");

-- CreateIndex
CREATE UNIQUE INDEX "account_directory_number_blind_index_key" ON "account_directory"("number_blind_index");

-- AddForeignKey
ALTER TABLE "transfer_status_change" ADD CONSTRAINT "transfer_status_change_transfer_id_fkey" FOREIGN KEY ("transfer_id") REFERENCES "transfer"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Added by hand before this migration was ever applied (Prisma cannot express CHECK constraints):
-- a transfer moves a positive amount, and only a terminal transfer has no saga step left.
ALTER TABLE "transfer" ADD CONSTRAINT "transfer_amount_positive" CHECK ("amount_minor" > 0);
ALTER TABLE "transfer" ADD CONSTRAINT "transfer_terminal_has_no_step"
  CHECK (("status" IN ('COMPLETED', 'FAILED', 'REJECTED')) = ("step" = 'NONE'));
