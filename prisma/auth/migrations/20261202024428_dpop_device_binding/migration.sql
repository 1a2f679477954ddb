-- AlterTable
ALTER TABLE "refresh_token" ADD COLUMN     "dpop_jkt" TEXT;
