/**
 * `pnpm seed`: demo data for a running local stack, made only through the public API, as a person
 * in Sandbox would: signs in as the development administrator (OTP read from the dev mailbox),
 * registers two customers, opens their accounts and deposits money. Safe to run again (existing
 * customers sign in instead; deposits use fixed idempotency keys). Development only.
 *   GATEWAY_URL (default http://127.0.0.1:4000/graphql), ADMIN_EMAIL, ADMIN_PASSWORD
 */
import { fileURLToPath } from "node:url";

export interface SeedOptions {
  gatewayUrl: string;
  adminEmail: string;
  adminPassword: string;
  log?: (line: string) => void;
}

export interface SeededCustomer {
  email: string;
  password: string;
  deviceId: string;
  accessToken: string;
  accountId: string;
  accountNumber: string;
}

const CUSTOMERS = [
  { email: "asha@vaultpay.local", phone: "+919800000001", password: "Asha-dev-password-1", depositMinor: "5000000" },
  { email: "ravi@vaultpay.local", phone: "+919800000002", password: "Ravi-dev-password-1", depositMinor: "1000000" },
];

type Customer = (typeof CUSTOMERS)[number];

export async function seed(options: SeedOptions): Promise<SeededCustomer[]> {
  const log = options.log ?? ((line: string) => console.log(line));
  const call = gatewayCaller(options.gatewayUrl);
  const adminToken = await signIn(call, options.adminEmail, options.adminPassword, "seed-admin");
  log(`signed in as ${options.adminEmail}`);
  const seeded: SeededCustomer[] = [];
  for (const customer of CUSTOMERS) {
    const deviceId = `seed-${customer.email.split("@")[0]}`;
    const accessToken = await signInOrRegister(call, customer, deviceId);
    const account = await savingsAccount(call, deviceId, accessToken);
    await call(
      `mutation($id: ID!, $amount: MinorUnits!, $key: String!) { depositFunds(accountId: $id, amountMinor: $amount, idempotencyKey: $key) { id } }`,
      // One key per account: a second seed does not deposit again.
      { id: account.id, amount: customer.depositMinor, key: `seed-deposit-${account.id}` },
      "seed-admin",
      adminToken,
    );
    log(`${customer.email} / ${customer.password}: account ${account.number} holds at least ${customer.depositMinor} paise`);
    seeded.push({
      email: customer.email,
      password: customer.password,
      deviceId,
      accessToken,
      accountId: account.id,
      accountNumber: account.number,
    });
  }
  return seeded;
}

/** One GraphQL operation through the gateway, as `deviceId` (and the token's holder, when given). */
type Call = <T>(query: string, variables: Record<string, unknown>, deviceId: string, token?: string) => Promise<T>;

/** Calls the gateway; an answer with errors throws them, in one message, with the first one's code. */
function gatewayCaller(gatewayUrl: string): Call {
  return async <T>(query: string, variables: Record<string, unknown>, deviceId: string, token?: string): Promise<T> => {
    const response = await fetch(gatewayUrl, {
      method: "POST",
      headers: { "content-type": "application/json", "x-device-id": deviceId, ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await response.json()) as { data?: T; errors?: Array<{ message: string; extensions?: { code?: string } }> };
    if (body.errors?.length)
      throw Object.assign(new Error(body.errors.map((e) => `${e.extensions?.code}: ${e.message}`).join("; ")), {
        code: body.errors[0]?.extensions?.code,
      });
    return body.data!;
  };
}

/** Completes an OTP challenge with the code from the development mailbox; returns the access token. */
async function verifyFromDevMailbox(call: Call, email: string, challengeId: string, deviceId: string): Promise<string> {
  const { devMailbox } = await call<{ devMailbox: Array<{ code: string | null }> }>(
    `query($to: String!) { devMailbox(to: $to) { code } }`,
    { to: email },
    deviceId,
  );
  const code = devMailbox.find((message) => message.code)?.code;
  if (!code) throw new Error(`no code in the dev mailbox of ${email} (is NODE_ENV production?)`);
  const { verifyOtp } = await call<{ verifyOtp: { accessToken: string } }>(
    `mutation($id: ID!, $code: String!, $device: String!) { verifyOtp(challengeId: $id, code: $code, deviceId: $device) { accessToken } }`,
    { id: challengeId, code, device: deviceId },
    deviceId,
  );
  return verifyOtp.accessToken;
}

async function signIn(call: Call, email: string, password: string, deviceId: string): Promise<string> {
  const { login } = await call<{ login: { challengeId: string } }>(
    `mutation($email: String!, $password: String!, $device: String!) { login(email: $email, password: $password, deviceId: $device) { challengeId } }`,
    { email, password, device: deviceId },
    deviceId,
  );
  return verifyFromDevMailbox(call, email, login.challengeId, deviceId);
}

/** A customer seeded before signs in; a new one registers. */
async function signInOrRegister(call: Call, customer: Customer, deviceId: string): Promise<string> {
  try {
    return await signIn(call, customer.email, customer.password, deviceId);
  } catch {
    const { register } = await call<{ register: { challengeId: string } }>(
      `mutation($email: String!, $phone: String!, $password: String!, $device: String!) { register(email: $email, phone: $phone, password: $password, deviceId: $device) { challengeId } }`,
      { email: customer.email, phone: customer.phone, password: customer.password, device: deviceId },
      deviceId,
    );
    return verifyFromDevMailbox(call, customer.email, register.challengeId, deviceId);
  }
}

/** The customer's savings account, opened on the first seed. */
async function savingsAccount(call: Call, deviceId: string, accessToken: string): Promise<{ id: string; number: string }> {
  const { myAccounts } = await call<{ myAccounts: Array<{ id: string; type: string; number: string }> }>(
    `{ myAccounts { id type number } }`,
    {},
    deviceId,
    accessToken,
  );
  const existing = myAccounts.find((account) => account.type === "SAVINGS");
  if (existing) return existing;
  const { openAccount } = await call<{ openAccount: { id: string; number: string } }>(
    `mutation { openAccount(type: SAVINGS) { id number } }`,
    {},
    deviceId,
    accessToken,
  );
  return openAccount;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await seed({
    gatewayUrl: process.env.GATEWAY_URL ?? "http://127.0.0.1:4000/graphql",
    adminEmail: process.env.ADMIN_EMAIL ?? "admin@vaultpay.local",
    adminPassword: process.env.ADMIN_PASSWORD ?? "VaultPay-dev-admin-1",
  }).catch((error: unknown) => {
    console.error(`seed failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
}
