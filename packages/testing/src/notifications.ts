/**
 * Real providers for tests of the notifiers: an SMTP server (the `smtp-server` package, STARTTLS
 * with a throwaway certificate, a login) and an SMS provider over HTTP that checks the body's
 * signature. Both on loopback; both record what they accepted.
 */
import { spawnSync } from "node:child_process";
import { createHmac, timingSafeEqual } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { SMTPServer, type SMTPServerSession } from "smtp-server";

export interface ReceivedMail {
  from: string;
  to: string[];
  subject: string;
  text: string;
  /** The session had upgraded to TLS when the message was sent. */
  secure: boolean;
  /** The SMTP login that sent it. */
  user: string | undefined;
}

export interface TestSmtpServer {
  host: string;
  port: number;
  user: string;
  password: string;
  /** PEM of the self-signed certificate the server presents (trust it as SMTP_CA_FILE). */
  caFile: string;
  received: ReceivedMail[];
  /** Answer the next `count` messages with this SMTP reply code (e.g. 451) instead of accepting. */
  failNext(count: number, responseCode?: number): void;
  /** The environment auth needs to send through this server. */
  env(): Record<string, string>;
  stop(): Promise<void>;
}

/** Decodes quoted-printable (nodemailer's choice for long lines): soft breaks and =XX bytes. */
function decodeQuotedPrintable(text: string): string {
  const bytes = text.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
  return Buffer.from(bytes, "latin1").toString("utf8");
}

/** Just enough of RFC 5322 for the plain-text messages auth sends. */
function parseMail(raw: string): { subject: string; text: string } {
  const split = raw.indexOf("\r\n\r\n");
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, " ");
  const body = raw.slice(split + 4);
  const header = (name: string) => new RegExp(`^${name}: (.*)$`, "im").exec(head)?.[1]?.trim() ?? "";
  const encoding = header("Content-Transfer-Encoding").toLowerCase();
  const text =
    encoding === "quoted-printable"
      ? decodeQuotedPrintable(body)
      : encoding === "base64"
        ? Buffer.from(body, "base64").toString("utf8")
        : body;
  return { subject: header("Subject"), text: text.replace(/\r\n$/, "") };
}

/** A throwaway self-signed certificate for 127.0.0.1 (openssl), to run real TLS on loopback. */
export function makeTestCertificate(dir: string): { keyFile: string; caFile: string } {
  const keyFile = path.join(dir, "key.pem");
  const caFile = path.join(dir, "cert.pem");
  const made = spawnSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      caFile,
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ],
    { encoding: "utf8" },
  );
  if (made.status !== 0) throw new Error(`openssl could not make a test certificate: ${made.stderr}`);
  return { keyFile, caFile };
}

/** What a test sees of an accepted message: its envelope, its content, and whether it came over TLS after a login. */
function receivedMail(raw: string, session: SMTPServerSession): ReceivedMail {
  const { subject, text } = parseMail(raw);
  return {
    from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
    to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
    subject,
    text,
    secure: session.secure,
    user: session.user as string | undefined,
  };
}

export async function startTestSmtpServer(): Promise<TestSmtpServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "vaultpay-smtp-"));
  const { keyFile, caFile } = makeTestCertificate(dir);
  const user = "vaultpay-test";
  const password = "smtp-test-password";
  const received: ReceivedMail[] = [];
  let failures: { count: number; responseCode: number } = { count: 0, responseCode: 451 };
  const server = new SMTPServer({
    key: readFileSync(keyFile),
    cert: readFileSync(caFile),
    secure: false,
    authMethods: ["PLAIN", "LOGIN"],
    // Like a real relay: no login before TLS, no mail without a login.
    allowInsecureAuth: false,
    authOptional: false,
    logger: false,
    onAuth(auth, _session, done) {
      if (auth.username === user && auth.password === password) return done(null, { user });
      done(new Error("Invalid username or password"));
    },
    onData(stream, session, done) {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        if (failures.count > 0) {
          failures.count--;
          return done(Object.assign(new Error("Try again later"), { responseCode: failures.responseCode }));
        }
        received.push(receivedMail(Buffer.concat(chunks).toString("utf8"), session));
        done();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.server.address() as AddressInfo).port;
  return {
    host: "127.0.0.1",
    port,
    user,
    password,
    caFile,
    received,
    failNext(count, responseCode = 451) {
      failures = { count, responseCode };
    },
    env: () => ({
      SMTP_HOST: "127.0.0.1",
      SMTP_PORT: String(port),
      SMTP_TLS: "starttls",
      SMTP_USER: user,
      SMTP_PASSWORD: password,
      SMTP_FROM: "VaultPay <no-reply@vaultpay.test>",
      SMTP_CA_FILE: caFile,
    }),
    async stop() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface ReceivedSms {
  id: string;
  to: string;
  text: string;
}

export interface TestSmsProvider {
  url: string;
  /** With `https`: the certificate to trust (NODE_EXTRA_CA_CERTS for a service process). */
  caFile: string | undefined;
  secret: string;
  received: ReceivedSms[];
  /** Requests refused because their signature did not check out. */
  refusedSignatures: number;
  /** Answer the next `count` requests with this status (e.g. 503), or hold them past any timeout. */
  failNext(count: number, status: number | "hang"): void;
  env(): Record<string, string>;
  stop(): Promise<void>;
}

/** The provider's side of SMS signing: `t=<seconds>,v1=<hex HMAC of "<t>.<body>">`, at most 5 minutes old. */
function signatureValid(secret: string, header: string | undefined, body: string): boolean {
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? "");
  if (!match) return false;
  if (Math.abs(Date.now() / 1000 - Number(match[1])) > 300) return false;
  const expected = createHmac("sha256", secret).update(`${match[1]}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(match[2]!, "hex"));
}

export async function startTestSmsProvider(options: { https?: boolean } = {}): Promise<TestSmsProvider> {
  const dir = options.https ? mkdtempSync(path.join(os.tmpdir(), "vaultpay-sms-")) : undefined;
  const certificate = dir ? makeTestCertificate(dir) : undefined;
  const secret = "sms-provider-shared-secret-0123456789";
  const received: ReceivedSms[] = [];
  let failures: { count: number; status: number | "hang" } = { count: 0, status: 503 };
  const provider: TestSmsProvider = {
    url: "",
    caFile: certificate?.caFile,
    secret,
    received,
    refusedSignatures: 0,
    failNext(count, status) {
      failures = { count, status };
    },
    env: () => ({ SMS_PROVIDER_URL: provider.url, SMS_SIGNING_SECRET: secret }),
    stop: async () => undefined,
  };
  const handler: http.RequestListener = (request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      if (failures.count > 0) {
        failures.count--;
        if (failures.status === "hang") return; // never answers: the sender's timeout must fire
        response.writeHead(failures.status).end();
        return;
      }
      if (!signatureValid(secret, request.headers["x-vaultpay-signature"] as string | undefined, body)) {
        provider.refusedSignatures++;
        response.writeHead(401).end();
        return;
      }
      const message = JSON.parse(body) as ReceivedSms;
      // Providers de-duplicate on the client's message id: a retry after a lost answer sends once.
      if (!received.some((sms) => sms.id === message.id)) received.push({ id: message.id, to: message.to, text: message.text });
      response.writeHead(202, { "content-type": "application/json" }).end(JSON.stringify({ accepted: true }));
    });
  };
  const server = certificate
    ? https.createServer({ key: readFileSync(certificate.keyFile), cert: readFileSync(certificate.caFile) }, handler)
    : http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  provider.url = `${certificate ? "https" : "http"}://127.0.0.1:${(server.address() as AddressInfo).port}/messages`;
  provider.stop = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
  return provider;
}
