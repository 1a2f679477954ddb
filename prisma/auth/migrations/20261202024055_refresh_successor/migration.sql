-- AlterTable
ALTER TABLE "refresh_token" ADD COLUMN     "successor_encrypted" TEXT;
