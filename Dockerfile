# One image for every VaultPay process; docker-compose.yml picks the entry point per service.
FROM node:24-bookworm-slim
WORKDIR /app
RUN npm install -g pnpm@10.34.8
COPY . .
RUN pnpm install --frozen-lockfile
# The web app the gateway serves at / (apps/web/dist); prints its gzipped JavaScript size.
RUN pnpm --filter @vaultpay/web build
ENV NODE_ENV=production HOST=0.0.0.0 GATEWAY_HOST=0.0.0.0
# Overridden per service in docker-compose.yml.
CMD ["node", "gateway/src/main.ts"]
