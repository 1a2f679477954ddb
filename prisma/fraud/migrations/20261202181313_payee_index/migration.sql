-- CreateIndex
CREATE INDEX "fraud_check_user_id_to_account_id_idx" ON "fraud_check"("user_id", "to_account_id");
