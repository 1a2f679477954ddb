-- CreateTable
CREATE TABLE "transfer_notice" (
    "id" UUID NOT NULL,
    "transfer_id" UUID NOT NULL,
    "status" TEXT NOT NULL,
    "user_id" UUID NOT NULL,
    "amount_minor" BIGINT NOT NULL,
    "currency" TEXT NOT NULL,
    "reason" TEXT,
    "event_id" UUID NOT NULL,
    "state" TEXT NOT NULL DEFAULT 'PENDING',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "sent_at" TIMESTAMPTZ(3),

    CONSTRAINT "transfer_notice_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "transfer_notice_state_next_attempt_at_idx" ON "transfer_notice"("state", "next_attempt_at");

-- CreateIndex
CREATE UNIQUE INDEX "transfer_notice_transfer_id_status_key" ON "transfer_notice"("transfer_id", "status");
