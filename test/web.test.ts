/**
 * The web app in a real browser (Debian's chromium driven by playwright-core) against a whole
 * stack: two customers register in two browser contexts (one at phone width), open accounts, the
 * operator deposits through the operator console, one sends to the other with a double click, the
 * sender's page shows DEBITED then COMPLETED pushed live, the receiver's balance changes and their
 * history lists the transfer as received; a transfer the fraud rules fail shows FAILED with its
 * reasons and the refund (and is not in the receiver's history); a customer asking
 * for the operator console is refused by the API; the operator replays the dead letters of a
 * consumer that failed (at phone width); axe finds no serious or critical violation.
 * VAULTPAY_WEB_SCREENSHOTS=<dir> saves screenshots of the main pages there (README's docs/).
 */
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { AxeBuilder } from "@axe-core/playwright";
import pg from "pg";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventConsumer, connectJetStream, type JetStreamLink } from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import { buildWebApp } from "@vaultpay/stack";
import { createTestDatabase, fraudOnlyOnAmount, startTestStack, uniqueName, type TestStack } from "@vaultpay/testing";
import { createDb, type Tx } from "../subgraphs/audit/src/db.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const PASSWORD = "Monsoon-harbour-ledger-42";
const ADMIN = { email: "admin@vaultpay.local", password: "VaultPay-dev-admin-1" };
const PHONE = { width: 390, height: 844 };
const SCREENSHOTS = process.env.VAULTPAY_WEB_SCREENSHOTS;
/** Transfers over ₹5,000 fail the fraud check in this stack; smaller ones pass. */
const FRAUD_FAILS_OVER_MINOR = 500_000n;

/** A consumer of this test's own on the stack's NATS: it dead-letters account.created until fixed. */
const FLAKY = "web-flaky-accounts";

let stack: TestStack & { teardown: () => Promise<void> };
let browser: Browser;
let appUrl: string;
const browserErrors: string[] = [];
let flakyDatabase: Awaited<ReturnType<typeof createTestDatabase>>;
let flakyDb: ReturnType<typeof createDb>;
let flakyLink: JetStreamLink;
let flaky: EventConsumer<Tx>;
let flakyCauseFixed = false;
const flakyApplied = new Set<string>();

beforeAll(async () => {
  await buildWebApp();
  [stack, flakyDatabase] = await Promise.all([
    startTestStack({ env: fraudOnlyOnAmount(FRAUD_FAILS_OVER_MINOR) }),
    createTestDatabase("audit"),
  ]);
  appUrl = stack.gatewayUrl.replace(/graphql$/, "");
  flakyDb = createDb(flakyDatabase.url);
  flakyLink = await connectJetStream(stack.nats.url, "web-test", createLogger({ service: "web-test", level: "silent" }));
  flaky = new EventConsumer<Tx>({
    name: FLAKY,
    stream: "ACCOUNTS",
    filterSubject: "account.created",
    db: flakyDb,
    js: flakyLink.js,
    jsm: flakyLink.jsm,
    logger: createLogger({ service: "web-test", level: "silent" }),
    maxDeliver: 2,
    backoffMs: [50],
    handle: async (event) => {
      if (!flakyCauseFixed) throw new Error("ledger unavailable");
      flakyApplied.add(event.id);
    },
  });
  await flaky.start();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await flaky?.stop();
  await flakyLink?.nc.close();
  await flakyDb?.$disconnect();
  await Promise.all([stack?.teardown(), flakyDatabase?.drop()]);
});

async function expectAccessible(page: Page, what: string): Promise<void> {
  const { violations } = await new AxeBuilder({ page }).analyze();
  const serious = violations.filter((violation) => violation.impact === "serious" || violation.impact === "critical");
  expect(
    serious.map(
      (violation) => `${what}: ${violation.id} — ${violation.help} (${violation.nodes.map((node) => node.target.join(" ")).join(", ")})`,
    ),
  ).toEqual([]);
  // Nothing wider than the screen: at phone width the page scrolls down, never sideways.
  const widths = await page.evaluate(() => {
    // Runs in the page; this file is type-checked without DOM types.
    const browserGlobal = globalThis as unknown as { document: { documentElement: { scrollWidth: number } }; innerWidth: number };
    return { page: browserGlobal.document.documentElement.scrollWidth, screen: browserGlobal.innerWidth };
  });
  expect(widths.page, `${what} is wider than the screen`).toBeLessThanOrEqual(widths.screen);
}

/** The whole page, or one part of it (a CSS selector). */
async function screenshot(page: Page, name: string, part?: string): Promise<void> {
  if (!SCREENSHOTS) return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`);
  await (part ? page.locator(part).screenshot({ path: file }) : page.screenshot({ path: file, fullPage: true }));
}

async function newPage(viewport?: { width: number; height: number }): Promise<Page> {
  const context = await browser.newContext(viewport ? { viewport } : {});
  const page = await context.newPage();
  // What the browser complained about, printed when a test fails (test/setup.ts prints stack lines).
  page.on("console", (message) => message.type() === "error" && browserErrors.push(`console: ${message.text()}`));
  page.on("pageerror", (error) => browserErrors.push(`page error: ${error.message}`));
  return page;
}

/** Email/password (and phone to register), then the OTP read from the dev mailbox by the app. */
async function signIn(page: Page, user: { email: string; password: string; register?: boolean }, audit = false): Promise<void> {
  await page.goto(appUrl);
  if (user.register) await page.getByRole("button", { name: "Register" }).click();
  if (audit) await expectAccessible(page, "sign in");
  await page.getByLabel("Email", { exact: true }).fill(user.email);
  if (user.register)
    await page.getByLabel("Mobile number (with country code)", { exact: true }).fill(`+9198${String(Date.now()).slice(-8)}`);
  await page.getByLabel("Password", { exact: true }).fill(user.password);
  await page
    .getByRole("button", { name: user.register ? "Register" : "Continue" })
    .last()
    .click();
  await page.getByRole("heading", { name: "Enter your one-time code" }).waitFor();
  if (audit) await expectAccessible(page, "one-time code");
  await page.getByRole("button", { name: "Read the code from the dev mailbox" }).click();
  await expect.poll(() => page.getByRole("textbox", { name: "One-time code" }).inputValue()).toMatch(/^\d{6}$/);
  await page.getByRole("button", { name: "Verify and sign in" }).click();
  await page.getByRole("heading", { name: "Your accounts" }).waitFor();
}

async function openAccount(page: Page, kind: "savings" | "current"): Promise<void> {
  await page.getByRole("button", { name: `Open a ${kind} account` }).click();
  await page.getByRole("listitem", { name: `${kind[0]!.toUpperCase()}${kind.slice(1)} account` }).waitFor();
}

async function balance(page: Page, type: "SAVINGS" | "CURRENT"): Promise<string> {
  return (await page.getByTestId(`balance-${type}`).textContent()) ?? "";
}

async function timeline(page: Page): Promise<string[]> {
  return page
    .locator("[data-testid=timeline] li[data-status]")
    .evaluateAll((items) => items.map((item) => item.getAttribute("data-status") ?? ""));
}

describe("web app in a real browser", () => {
  it("two customers, an operator deposit, a live transfer sent with a double click, a fraud failure, no serious axe violation", async () => {
    const sender = await newPage(PHONE);
    const receiver = await newPage();
    const operator = await newPage();
    const senderEmail = `${uniqueName("asha")}@example.com`;
    const receiverEmail = `${uniqueName("ravi")}@example.com`;

    await signIn(sender, { email: senderEmail, password: PASSWORD, register: true }, true);
    await signIn(receiver, { email: receiverEmail, password: PASSWORD, register: true });
    await openAccount(sender, "savings");
    await openAccount(sender, "current");
    await openAccount(receiver, "savings");
    expect(await balance(sender, "SAVINGS")).toBe("₹0.00");
    await expect.poll(() => sender.getByTestId("number-SAVINGS").textContent()).toMatch(/\d{4}$/);
    const senderSavingsLast4 = (await sender.getByTestId("number-SAVINGS").textContent())!.slice(-4);
    await expectAccessible(sender, "accounts");
    await screenshot(sender, "accounts-phone");

    // The receiver reveals the full number to give it to the sender.
    await receiver.getByRole("button", { name: "Show number of your savings account" }).click();
    await expect.poll(() => receiver.getByTestId("number-SAVINGS").textContent()).toMatch(/^\d{12}$/);
    const receiverNumber = (await receiver.getByTestId("number-SAVINGS").textContent())!;

    // 50 customers who signed up long before (ids sorting first), written straight into auth's
    // table — registering 50 through the OTP step would cost minutes — fill the first page of
    // users, so the operator reaches the sender only on the second ("Show 50 more customers").
    const auth = new pg.Client({ connectionString: stack.databaseUrls.auth });
    await auth.connect();
    try {
      await auth.query(
        `INSERT INTO "user" (id, email, password_hash, phone_encrypted, phone_blind_index, updated_at)
           SELECT ('00000000-0000-7000-8000-' || lpad(n::text, 12, '0'))::uuid, 'earlier-' || n || '@example.com', 'not-a-hash', 'not-a-phone', 'earlier-' || n, now()
             FROM generate_series(1, 50) AS n`,
      );
    } finally {
      await auth.end();
    }

    // The operator deposits ₹10,000 into the sender's savings through the console.
    await signIn(operator, ADMIN);
    await operator.getByRole("link", { name: "Operator" }).click();
    await operator.getByRole("heading", { name: "Operator console" }).waitFor();
    const senderSavings = operator.getByLabel("Account", { exact: true }).locator("option", { hasText: `${senderEmail} · SAVINGS` });
    await operator.getByRole("button", { name: "Show 50 more customers" }).waitFor();
    expect(await senderSavings.count()).toBe(0);
    await operator.getByRole("button", { name: "Show 50 more customers" }).click();
    await expect.poll(() => senderSavings.count(), { timeout: 10_000 }).toBe(1);
    await operator.getByLabel("Account", { exact: true }).selectOption({ label: (await senderSavings.textContent())! });
    await operator.getByLabel("Amount in rupees (₹)", { exact: true }).fill("10,000");
    await operator.getByRole("button", { name: "Deposit" }).click();
    await operator.getByText(/Deposited ₹10,000\.00/).waitFor();
    await expectAccessible(operator, "operator console");

    await sender.getByRole("button", { name: "Refresh balances" }).click();
    await expect.poll(() => balance(sender, "SAVINGS")).toBe("₹10,000.00");

    // Send ₹250.50 with a double click: one intent, one idempotency key, one transfer.
    await sender.getByRole("link", { name: "Send money" }).click();
    await sender.getByLabel("From", { exact: true }).selectOption({ index: 0 });
    await sender.getByLabel("To account number", { exact: true }).fill(receiverNumber);
    await sender.getByLabel("Amount in rupees (₹)", { exact: true }).fill("250.50");
    await sender.getByLabel("Note (optional)", { exact: true }).fill("Dinner, Saturday");
    await expectAccessible(sender, "send money");
    await screenshot(sender, "send-phone");
    await sender.getByRole("button", { name: "Send money" }).dblclick();
    await sender.getByRole("heading", { name: /^Transfer ₹250\.50/ }).waitFor();
    await expect
      .poll(() => timeline(sender), { timeout: 30_000 })
      .toEqual(["PENDING", "DEBITED", "COMPLETED"])
      .catch(async (error) => {
        console.log(browserErrors.join("\n"), await sender.locator("main").textContent());
        throw error;
      });
    await expectAccessible(sender, "transfer");
    await screenshot(sender, "transfer-phone");
    const reference = (await sender.getByTestId("reference").textContent())!;

    const transactions = new pg.Client({ connectionString: stack.databaseUrls.transactions });
    await transactions.connect();
    try {
      const { rows } = await transactions.query(`SELECT count(*)::int AS n FROM transfer`);
      expect(rows[0].n).toBe(1);
    } finally {
      await transactions.end();
    }

    await receiver.getByRole("button", { name: "Refresh balances" }).click();
    await expect.poll(() => balance(receiver, "SAVINGS")).toBe("₹250.50");
    await screenshot(receiver, "accounts");

    // ₹6,000 is over this stack's fraud threshold: FAILED with its reasons, the money refunded.
    await sender.getByRole("link", { name: "Send money" }).click();
    await sender.getByLabel("To account number", { exact: true }).fill(receiverNumber);
    await sender.getByLabel("Amount in rupees (₹)", { exact: true }).fill("6000");
    await sender.getByRole("button", { name: "Send money" }).click();
    await expect.poll(() => timeline(sender), { timeout: 30_000 }).toEqual(["PENDING", "DEBITED", "FAILED"]);
    await sender.getByText("Our safety checks stopped this transfer").waitFor();
    await expect.poll(() => sender.locator(".notice.error li").count()).toBeGreaterThan(0);
    await screenshot(sender, "transfer-failed-phone");
    await sender.getByRole("link", { name: "Accounts" }).click();
    await expect.poll(() => balance(sender, "SAVINGS")).toBe("₹9,749.50");

    await sender.getByRole("link", { name: "History" }).click();
    await expect.poll(() => sender.locator("tbody tr").count()).toBe(2);
    expect(await sender.locator("tbody tr").first().textContent()).toContain("₹6,000.00"); // newest first
    await expectAccessible(sender, "history");

    // The receiver's history lists the ₹250.50 that arrived, marked as received with the sender's
    // masked number, and nothing of the ₹6,000 that failed before reaching them.
    await receiver.getByRole("link", { name: "History" }).click();
    await expect.poll(() => receiver.locator("tbody tr").count()).toBe(1);
    const receivedRow = receiver.locator("tbody tr").first();
    expect(await receivedRow.getAttribute("data-direction")).toBe("RECEIVED");
    const [, from, to, ...rest] = await receivedRow.locator("td").allTextContents();
    expect(from).toMatch(new RegExp(`${senderSavingsLast4}$`));
    expect(to).toMatch(new RegExp(`${receiverNumber.slice(-4)}$`));
    expect(rest).toEqual(["+₹250.50", "Received"]);
    await expectAccessible(receiver, "history with a received transfer");
    await screenshot(receiver, "history-received");
    await receivedRow.getByRole("link").click();
    await receiver.getByRole("heading", { name: /^Received \+₹250\.50/ }).waitFor();
    await expect.poll(() => timeline(receiver), { timeout: 10_000 }).toEqual(["PENDING", "DEBITED", "COMPLETED"]);
    expect(await receiver.locator(".notice.error").count()).toBe(0);
    await expectAccessible(receiver, "received transfer");
    await receiver.getByRole("link", { name: "Accounts" }).click();

    // Silent refresh: an access token about to expire is renewed with the rotating refresh token.
    const stored = (page: Page) =>
      page.evaluate(
        () =>
          JSON.parse(localStorage.getItem("vaultpay.session") ?? "null") as {
            accessToken: string;
            refreshToken: string;
            accessTokenExpiresAt: string;
          },
      );
    const before = await stored(sender);
    await sender.evaluate(
      (session) =>
        localStorage.setItem("vaultpay.session", JSON.stringify({ ...session, accessTokenExpiresAt: new Date(0).toISOString() })),
      before,
    );
    await sender.reload();
    await sender.getByRole("link", { name: "Devices" }).click();
    await sender.getByText("this device").waitFor();
    await expectAccessible(sender, "devices");
    const after = await stored(sender);
    expect(after.refreshToken).not.toBe(before.refreshToken);
    expect(Date.parse(after.accessTokenExpiresAt)).toBeGreaterThan(Date.now());

    // A customer typing the operator's address is refused by the API, not only by the menu.
    expect(await sender.getByRole("link", { name: "Operator" }).count()).toBe(0);
    await sender.goto(`${appUrl}#/operator`);
    await sender.getByText("You are not allowed to do that.").first().waitFor();

    // The operator: fraud checks failed first with the rule that fired, the transfer's whole audit
    // trail by its reference (correlation id), and the chain verified.
    await operator.getByRole("button", { name: "Refresh fraud checks" }).click();
    await expect.poll(() => operator.locator("section[aria-labelledby=fraud-heading] tbody tr").count()).toBe(2);
    expect(await operator.locator("section[aria-labelledby=fraud-heading] tbody tr").first().textContent()).toMatch(/FAILED.*100.*\w/);
    await operator.getByLabel("Correlation id (empty: the first records)", { exact: true }).fill(reference);
    await operator.getByRole("button", { name: "Show the trail" }).click();
    await expect
      .poll(async () => (await operator.getByRole("list", { name: "Audit records" }).textContent()) ?? "")
      .toMatch(/transaction\.initiated[\s\S]*transaction\.completed|transaction\.completed[\s\S]*transaction\.initiated/);
    await operator.getByRole("button", { name: "Verify the audit chain" }).click();
    await operator.getByText(/The audit chain is intact: \d+ records checked\./).waitFor();
    await expectAccessible(operator, "operator console with results");
    await screenshot(operator, "operator");

    // Dead letters at phone width: the flaky consumer gave up on the three accounts opened above;
    // the operator sees them with their last error, fixes the cause and replays them (confirmed).
    await operator.setViewportSize(PHONE);
    await operator.getByRole("button", { name: "Refresh dead letters" }).click();
    const flakyLetters = operator.getByRole("list", { name: `Dead letters of ${FLAKY}` }).getByRole("listitem");
    await expect.poll(() => flakyLetters.count()).toBe(3);
    expect(await flakyLetters.first().textContent()).toMatch(/account\.created.*after 2 deliveries.*Error: ledger unavailable/);
    await operator.getByRole("button", { name: `Replay dead letters of ${FLAKY}` }).click();
    await expectAccessible(operator, "operator console, replay to confirm");
    await screenshot(operator, "operator-dead-letters-phone", "section.dead-letters");
    flakyCauseFixed = true;
    await operator.getByRole("button", { name: "Yes, replay 3 dead letters" }).click();
    await operator
      .getByRole("status")
      .getByText(new RegExp(`Replayed 3 dead letters of ${FLAKY}; 0 still waiting\\. Recorded in the audit log as event [0-9a-f-]{36}\\.`))
      .waitFor();
    await expect.poll(() => flakyApplied.size).toBe(3);
    await expect.poll(() => operator.getByRole("list", { name: `Dead letters of ${FLAKY}` }).count()).toBe(0);
    await expectAccessible(operator, "operator console after the replay");
    // RATE_LIMITED as the gateway answers it (one answer faked at the network): a sentence, a
    // countdown from retryAfterSeconds, and "Try again" only once it has run out.
    let limited = false;
    await receiver.route("**/graphql", async (route) => {
      if (limited || !route.request().postData()?.includes("query MyAccounts")) return route.fallback();
      limited = true;
      await route.fulfill({
        status: 429,
        contentType: "application/json",
        body: JSON.stringify({ errors: [{ message: "Too many requests", extensions: { code: "RATE_LIMITED", retryAfterSeconds: 2 } }] }),
      });
    });
    await receiver.getByRole("button", { name: "Refresh balances" }).click();
    await receiver
      .getByRole("alert")
      .getByText(/Too many attempts\. Please wait before trying again\. You can try again in [12] s\./)
      .waitFor();
    expect(await receiver.getByRole("button", { name: "Try again" }).isDisabled()).toBe(true);
    await expect.poll(() => receiver.getByRole("button", { name: "Try again" }).isEnabled(), { timeout: 5_000 }).toBe(true);
    await receiver.getByRole("button", { name: "Try again" }).click();
    await expect.poll(() => receiver.getByRole("alert").count()).toBe(0);
    await receiver.unroute("**/graphql");

    // A refresh token the server refuses (here: never issued) ends the session with a sentence.
    await receiver.evaluate(() => {
      const session = JSON.parse(localStorage.getItem("vaultpay.session")!);
      localStorage.setItem(
        "vaultpay.session",
        JSON.stringify({ ...session, refreshToken: "not-a-refresh-token", accessTokenExpiresAt: new Date(0).toISOString() }),
      );
    });
    await receiver.reload();
    await receiver.getByText("Your session has expired. Please sign in again.").waitFor();

    await sender.getByRole("button", { name: /Sign out/ }).click();
    await sender.getByRole("heading", { name: "Sign in to VaultPay" }).waitFor();
  }, 180_000);
});

it("the chromium this test drives is installed (.ci/run installs Debian's package)", () => {
  expect(existsSync(CHROMIUM)).toBe(true);
});
