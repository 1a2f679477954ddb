-- AlterTable
ALTER TABLE "fraud_check" ADD COLUMN     "device_proven" BOOLEAN NOT NULL DEFAULT false;
