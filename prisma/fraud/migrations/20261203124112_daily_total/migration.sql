-- CreateTable
CREATE TABLE "fraud_daily_total" (
    "user_id" TEXT NOT NULL,
    "day_from" TIMESTAMPTZ(3) NOT NULL,
    "time_zone" TEXT NOT NULL,
    "day_to" TIMESTAMPTZ(3) NOT NULL,
    "count" INTEGER NOT NULL,
    "amount_minor" BIGINT NOT NULL,

    CONSTRAINT "fraud_daily_total_pkey" PRIMARY KEY ("user_id","day_from","time_zone")
);
