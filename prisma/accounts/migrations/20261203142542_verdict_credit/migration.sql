-- AlterTable
ALTER TABLE "saga_decision" ADD COLUMN     "to_account_id" TEXT;
