-- CreateTable
CREATE TABLE "reconciliation_checkpoint" (
    "name" TEXT NOT NULL,
    "checked_before" TIMESTAMPTZ(3) NOT NULL,
    "open_transfer_ids" TEXT[],
    "full_at" TIMESTAMPTZ(3),
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "reconciliation_checkpoint_pkey" PRIMARY KEY ("name")
);

-- CreateIndex
CREATE INDEX "transfer_status_change_changed_at_idx" ON "transfer_status_change" USING BRIN ("changed_at");
