-- CreateTable
CREATE TABLE "audit_record" (
    "seq" BIGINT NOT NULL,
    "event_id" UUID NOT NULL,
    "type" TEXT NOT NULL,
    "occurred_at" TIMESTAMPTZ(3) NOT NULL,
    "correlation_id" TEXT NOT NULL,
    "causation_id" TEXT,
    "actor_user_id" TEXT,
    "data" TEXT NOT NULL,
    "hash" CHAR(64) NOT NULL,

    CONSTRAINT "audit_record_pkey" PRIMARY KEY ("seq")
);

-- CreateTable
CREATE TABLE "audit_chain_head" (
    "id" INTEGER NOT NULL,
    "seq" BIGINT NOT NULL,
    "hash" CHAR(64) NOT NULL,

    CONSTRAINT "audit_chain_head_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "audit_record_event_id_key" ON "audit_record"("event_id");

-- CreateIndex
CREATE INDEX "audit_record_correlation_id_seq_idx" ON "audit_record"("correlation_id", "seq");

-- CreateIndex
CREATE INDEX "audit_record_type_seq_idx" ON "audit_record"("type", "seq");

-- ---------------------------------------------------------------------------------------------
-- Added by hand to the generated migration before it was ever applied: triggers, a CHECK and the
-- head's seed row, which Prisma's schema language cannot express.
-- ---------------------------------------------------------------------------------------------

-- The log is append-only for everyone, owner and superuser included (REVOKE would not bind them):
-- statement-level, so even an UPDATE or DELETE matching no row is refused.
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_record_append_only
  BEFORE UPDATE OR DELETE OR TRUNCATE ON "audit_record"
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- The chain head: exactly one row, seq 0 and the genesis hash (64 zeros) before the first append.
ALTER TABLE "audit_chain_head" ADD CONSTRAINT "audit_chain_head_single_row" CHECK ("id" = 1);
INSERT INTO "audit_chain_head" ("id", "seq", "hash") VALUES (1, 0, repeat('0', 64));

-- The head only moves forward, onto a record that exists with that hash, over records with no gap:
-- the gap-free sequence is asserted by the database, not only by the code that assigns it.
CREATE FUNCTION audit_head_moves_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW."id" <> OLD."id" OR NEW."seq" < OLD."seq" THEN
    RAISE EXCEPTION 'audit chain head can only move forward' USING ERRCODE = 'check_violation';
  END IF;
  IF NEW."seq" > OLD."seq" AND (
       NOT EXISTS (SELECT 1 FROM "audit_record" WHERE "seq" = NEW."seq" AND "hash" = NEW."hash")
       OR (SELECT count(*) FROM "audit_record" WHERE "seq" > OLD."seq" AND "seq" <= NEW."seq") <> NEW."seq" - OLD."seq"
     ) THEN
    RAISE EXCEPTION 'audit chain head must point at the last of contiguous records' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER audit_chain_head_forward_only
  BEFORE UPDATE ON "audit_chain_head"
  FOR EACH ROW EXECUTE FUNCTION audit_head_moves_forward();

CREATE TRIGGER audit_chain_head_no_delete
  BEFORE DELETE OR TRUNCATE ON "audit_chain_head"
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
