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

-- A passed check raises the day totals that hold its initiation time (one per zone read so far; a
-- calendar day is under 3 days long in any zone), whatever inserts it: the totals stay equal to the
-- checks' sums, also while replicas of an older version, which do not know the totals, still run.
-- Where no total holds it yet, the first read of that day and zone starts one from the checks.
CREATE FUNCTION fraud_daily_total_add_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE "fraud_daily_total"
     SET "count" = "count" + 1, "amount_minor" = "amount_minor" + NEW."amount_minor"
   WHERE "user_id" = NEW."user_id" AND "day_from" <= NEW."initiated_at"
     AND "day_from" > NEW."initiated_at" - interval '3 days' AND "day_to" > NEW."initiated_at";
  RETURN NULL;
END
$$;

CREATE TRIGGER fraud_check_daily_total
  AFTER INSERT ON "fraud_check"
  FOR EACH ROW WHEN (NEW."passed") EXECUTE FUNCTION fraud_daily_total_add_check();
