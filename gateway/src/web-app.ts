/**
 * The built web app (apps/web/dist) served by the gateway at `/`, so the app and `/graphql` share
 * one origin: no CORS to open, DPoP's `htu` is simply `<origin>/graphql`, and the graphql-ws socket
 * goes to the same host. Only GET/HEAD of files inside the folder; the app routes by URL hash, so
 * `/` is the only page. A strict Content-Security-Policy allows scripts and connections to this
 * origin only.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type http from "node:http";
import path from "node:path";

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
};

export const WEB_APP_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
};

/** A fallback route for createHttpServer serving `directory`; false when a request is not for it. */
export function webAppRoute(directory: string) {
  const root = path.resolve(directory);
  return async (request: http.IncomingMessage, response: http.ServerResponse, url: URL): Promise<boolean> => {
    if (request.method !== "GET" && request.method !== "HEAD") return false;
    let relative: string;
    try {
      relative = decodeURIComponent(url.pathname);
    } catch {
      return false;
    }
    if (relative === "/" || relative === "/index.html") relative = "/index.html";
    const file = path.resolve(root, `.${relative}`);
    // Nothing outside the folder, however the path is spelled.
    if (!file.startsWith(root + path.sep)) return false;
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) {
      if (relative !== "/index.html") return false;
      response.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
      response.end("The web app is not built: run `pnpm --filter @vaultpay/web build` (pnpm start builds it).\n");
      return true;
    }
    // Hashed asset names change with their content: cache them for good; index.html never.
    const immutable = relative.startsWith("/assets/");
    response.writeHead(200, {
      ...WEB_APP_HEADERS,
      "content-type": CONTENT_TYPES[path.extname(file)] ?? "application/octet-stream",
      "content-length": info.size,
      "cache-control": immutable ? "public, max-age=31536000, immutable" : "no-cache",
    });
    if (request.method === "HEAD") {
      response.end();
      return true;
    }
    await new Promise<void>((resolve, reject) => {
      createReadStream(file).on("error", reject).pipe(response).on("finish", resolve).on("error", reject);
    });
    return true;
  };
}
