import type http from "node:http";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { baseConfigSchema, portSchema } from "@vaultpay/kit";
import { parseCidrList } from "./client-address.ts";

export const gatewayConfigSchema = baseConfigSchema
  .extend({
    GATEWAY_PORT: portSchema.default(4000),
    GATEWAY_HOST: z.string().default("127.0.0.1"),
    /** Per-subgraph URL overrides; the supergraph's routing URLs apply otherwise. */
    AUTH_URL: z.string().url().optional(),
    ACCOUNTS_URL: z.string().url().optional(),
    TRANSACTIONS_URL: z.string().url().optional(),
    FRAUD_URL: z.string().url().optional(),
    AUDIT_URL: z.string().url().optional(),
    /**
     * The public http(s) URL of /graphql as clients address it (behind a TLS proxy:
     * https://api.example.com/graphql). DPoP proofs must name it as `htu`. Unset: http:// + the
     * request's Host header + /graphql.
     */
    GATEWAY_PUBLIC_URL: z.string().url().optional(),
    GATEWAY_SECRET: z.string().min(32, "GATEWAY_SECRET must be at least 32 characters"),
    AUTH_JWKS_URL: z.string().url(),
    REDIS_URL: z.string().url().default("redis://127.0.0.1:6379"),
    RATE_LIMIT_OPERATIONS: z.coerce.number().int().positive().default(300),
    RATE_LIMIT_CREDENTIAL_ATTEMPTS: z.coerce.number().int().positive().default(10),
    /**
     * Requests per window from one address, counted before anything is parsed — invalid documents
     * included. Roomy, for several people behind one NAT; the per-user limit above is the fine one.
     */
    RATE_LIMIT_REQUESTS_PER_IP: z.coerce.number().int().positive().default(1_200),
    RATE_LIMIT_WINDOW_SECONDS: z.coerce.number().int().positive().max(86_400).default(60),
    MAX_QUERY_DEPTH: z.coerce.number().int().positive().max(50).default(10),
    MAX_QUERY_FIELDS: z.coerce.number().int().positive().max(5_000).default(300),
    MAX_QUERY_ALIASES: z.coerce.number().int().nonnegative().max(500).default(30),
    /**
     * Caps on a document before it is parsed (graphql-armor's defaults). VaultPay's own clients send
     * under 200 tokens and Sandbox's introspection query about 190 tokens / 2 KB; parsing stops at
     * the token cap, so a refused document costs at most that much work.
     */
    MAX_DOCUMENT_CHARS: z.coerce.number().int().positive().max(1_000_000).default(15_000),
    MAX_DOCUMENT_TOKENS: z.coerce.number().int().positive().max(100_000).default(1_000),
    /** The built web app served at `/` (same origin as /graphql); absent folder: a hint to build it. */
    WEB_APP_DIR: z
      .string()
      .min(1)
      .default(fileURLToPath(new URL("../../apps/web/dist", import.meta.url))),
    MAX_BODY_BYTES: z.coerce
      .number()
      .int()
      .positive()
      .max(10 * 1024 * 1024)
      .default(256 * 1024),
    /**
     * Proxies in front of the gateway whose x-forwarded-for entries are believed (client-address.ts):
     * how many (TRUSTED_PROXY_HOPS) or which networks (TRUSTED_PROXY_CIDRS, comma-separated). Unset:
     * the socket's peer is the client and the header is ignored.
     */
    /**
     * Bearer token Prometheus presents at GET /metrics. The gateway's port is public, so in
     * production /metrics exists only with a token; outside production it is open without one.
     */
    METRICS_TOKEN: z.string().min(32, "METRICS_TOKEN must be at least 32 characters").optional(),
    TRUSTED_PROXY_HOPS: z.coerce.number().int().min(0).max(10).default(0),
    TRUSTED_PROXY_CIDRS: z
      .string()
      .optional()
      .superRefine((text, issues) => {
        try {
          parseCidrList(text);
        } catch (error) {
          issues.addIssue({ code: "custom", message: (error as Error).message });
        }
      }),
  })
  .refine((env) => !(env.TRUSTED_PROXY_HOPS > 0 && env.TRUSTED_PROXY_CIDRS?.trim()), {
    path: ["TRUSTED_PROXY_CIDRS"],
    message: "give TRUSTED_PROXY_HOPS or TRUSTED_PROXY_CIDRS, not both",
  });

export type GatewayConfig = z.infer<typeof gatewayConfigSchema>;

export function subgraphUrlOverride(config: GatewayConfig, name: string): string | undefined {
  const key = `${name.toUpperCase()}_URL` as keyof GatewayConfig;
  const value = config[key];
  return typeof value === "string" ? value : undefined;
}

/** The URL a DPoP proof's htu must name: the http(s) URL of /graphql (also for graphql-ws). */
export function graphqlHttpUrl(config: Pick<GatewayConfig, "GATEWAY_PUBLIC_URL">, request: http.IncomingMessage): string {
  if (config.GATEWAY_PUBLIC_URL) return config.GATEWAY_PUBLIC_URL;
  const host = (request.headers.host ?? "localhost").slice(0, 255);
  return `http://${host}/graphql`;
}
