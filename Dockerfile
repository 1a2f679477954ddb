# One image for every VaultPay process; docker-compose.yml picks the entry point per service.
FROM node:24-bookworm-slim
WORKDIR /app
RUN npm install -g pnpm@10.34.8
COPY . .
RUN pnpm install --frozen-lockfile
ENV NODE_ENV=production HOST=0.0.0.0 GATEWAY_HOST=0.0.0.0
# Overridden per service in docker-compose.yml.
CMD ["node", "--import", "tsx", "gateway/src/main.ts"]
