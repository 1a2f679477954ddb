-- AlterTable
ALTER TABLE "transfer" ADD COLUMN     "request_device_proven" BOOLEAN NOT NULL DEFAULT false;
