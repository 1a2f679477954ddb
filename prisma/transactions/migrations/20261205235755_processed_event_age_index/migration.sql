-- CreateIndex
CREATE INDEX "processed_event_processed_at_idx" ON "processed_event" USING BRIN ("processed_at");
