/** The customer's accounts: open one of each type, masked numbers, reveal on request, balances. */
import { useEffect, useState } from "react";
import { request } from "../api.ts";
import { formatPaise } from "../money.ts";
import { ACCOUNT_TYPES, AccountNumber, MyAccounts, OpenAccount, type Account, type AccountType } from "../operations.ts";
import { ErrorNotice, Loading, PageHeading, useQuery } from "../ui.tsx";

const TYPE_NAMES: Record<AccountType, string> = { SAVINGS: "Savings account", CURRENT: "Current account" };

export function Accounts() {
  const accounts = useQuery(MyAccounts, {});
  const { reload } = accounts;
  // Money may arrive while the page is open: refresh when the person comes back to it.
  useEffect(() => {
    const onFocus = () => reload();
    window.addEventListener("focus", onFocus);
    return () => window.removeEventListener("focus", onFocus);
  }, [reload]);
  const held = new Set(accounts.data?.myAccounts.map((account) => account.type));
  return (
    <main>
      <PageHeading>Your accounts</PageHeading>
      <ErrorNotice error={accounts.error} onRetry={reload} />
      {!accounts.data && accounts.loading && <Loading what="your accounts" />}
      {accounts.data && accounts.data.myAccounts.length === 0 && <p>You have no account yet. Open one below.</p>}
      <ul className="cards" aria-label="Accounts">
        {accounts.data?.myAccounts.map((account) => (
          <AccountCard key={account.id} account={account} />
        ))}
      </ul>
      <button type="button" onClick={reload} disabled={accounts.loading}>
        Refresh balances
      </button>
      <OpenAccountForm missing={ACCOUNT_TYPES.filter((type) => !held.has(type))} onOpened={reload} />
    </main>
  );
}

function AccountCard({ account }: { account: Account }) {
  const [number, setNumber] = useState<string>();
  const [error, setError] = useState<unknown>();
  async function toggle() {
    if (number) return setNumber(undefined);
    setError(undefined);
    try {
      // Each reveal is a fresh read, which the platform audits; nothing is cached.
      setNumber((await request(AccountNumber, { id: account.id })).account?.number);
    } catch (caught) {
      setError(caught);
    }
  }
  const name = TYPE_NAMES[account.type];
  return (
    <li className="card" aria-label={name}>
      <h2>{name}</h2>
      <p>
        Account number:{" "}
        <span className="number" data-testid={`number-${account.type}`}>
          {number ?? account.maskedNumber}
        </span>{" "}
        <button type="button" className="link" onClick={toggle}>
          {number ? "Hide" : "Show"} number<span className="visually-hidden"> of your {name.toLowerCase()}</span>
        </button>
      </p>
      <p className="balance">
        Balance: <strong data-testid={`balance-${account.type}`}>{formatPaise(account.balance.minor, account.balance.currency)}</strong>
      </p>
      {account.status !== "ACTIVE" && <p>Status: {account.status}</p>}
      <ErrorNotice error={error} />
    </li>
  );
}

function OpenAccountForm({ missing, onOpened }: { missing: AccountType[]; onOpened: () => void }) {
  const [busy, setBusy] = useState<AccountType>();
  const [error, setError] = useState<unknown>();
  if (missing.length === 0) return null;
  async function open(type: AccountType) {
    if (busy) return;
    setBusy(type);
    setError(undefined);
    try {
      await request(OpenAccount, { type });
      onOpened();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(undefined);
    }
  }
  return (
    <section aria-labelledby="open-heading">
      <h2 id="open-heading">Open an account</h2>
      {missing.map((type) => (
        <button key={type} type="button" onClick={() => open(type)} disabled={busy !== undefined}>
          Open a {TYPE_NAMES[type].toLowerCase()}
        </button>
      ))}
      <ErrorNotice error={error} />
    </section>
  );
}
