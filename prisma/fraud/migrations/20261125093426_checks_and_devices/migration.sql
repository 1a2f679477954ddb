-- CreateTable
CREATE TABLE "fraud_check" (
    "transfer_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "from_account_id" TEXT NOT NULL,
    "to_account_id" TEXT NOT NULL,
    "amount_minor" BIGINT NOT NULL,
    "currency" CHAR(3) NOT NULL,
    "request_device_id" TEXT,
    "session_device_id" TEXT NOT NULL,
    "initiated_at" TIMESTAMPTZ(3) NOT NULL,
    "risk_score" INTEGER NOT NULL,
    "passed" BOOLEAN NOT NULL,
    "reasons" TEXT[],
    "evaluation" JSONB NOT NULL,
    "request_event_id" UUID NOT NULL,
    "checked_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "fraud_check_pkey" PRIMARY KEY ("transfer_id")
);

-- CreateTable
CREATE TABLE "known_device" (
    "user_id" TEXT NOT NULL,
    "device_id" TEXT NOT NULL,
    "device_record_id" TEXT NOT NULL,
    "registered_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "known_device_pkey" PRIMARY KEY ("user_id","device_id")
);

-- CreateIndex
CREATE INDEX "fraud_check_user_id_initiated_at_idx" ON "fraud_check"("user_id", "initiated_at");

-- CreateIndex
CREATE INDEX "fraud_check_from_account_id_initiated_at_idx" ON "fraud_check"("from_account_id", "initiated_at");

-- CreateIndex
CREATE INDEX "fraud_check_checked_at_idx" ON "fraud_check"("checked_at");
