-- CreateIndex
CREATE INDEX "journal_entry_created_at_idx" ON "journal_entry" USING BRIN ("created_at");
