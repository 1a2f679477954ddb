-- AlterTable
ALTER TABLE "transfer_notice" ADD COLUMN     "claimed_at" TIMESTAMPTZ(3);
