/** The shell: signed out → SignIn; signed in → a menu and the page the hash names. */
import { useEffect, useState } from "react";
import { currentSession, onSessionChange, request, setSession } from "./api.ts";
import { Logout } from "./operations.ts";
import { Accounts } from "./pages/Accounts.tsx";
import { Devices } from "./pages/Devices.tsx";
import { History } from "./pages/History.tsx";
import { Operator } from "./pages/Operator.tsx";
import { Send } from "./pages/Send.tsx";
import { SignIn } from "./pages/SignIn.tsx";
import { Transfer } from "./pages/Transfer.tsx";

const route = () => location.hash.replace(/^#/, "") || "/accounts";

export function App() {
  const [session, setCurrent] = useState(currentSession);
  const [path, setPath] = useState(route);
  const [notice, setNotice] = useState<string>();
  useEffect(
    () =>
      onSessionChange((next) => {
        // Dropped without signing out: the refresh token was refused (expired, revoked or reused).
        if (!next && currentSessionWasLive.value) setNotice("Your session has expired. Please sign in again.");
        currentSessionWasLive.value = Boolean(next);
        setCurrent(next);
      }),
    [],
  );
  useEffect(() => {
    const onHash = () => setPath(route());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  const navigate = (to: string) => {
    location.hash = to;
  };
  if (!session) return <SignIn notice={notice} />;

  async function signOut() {
    currentSessionWasLive.value = false;
    await request(Logout, {}).catch(() => undefined); // signed out here whatever the server says
    setNotice("You have signed out.");
    setSession(undefined);
  }
  const admin = session.user.role === "ADMIN";
  const links: Array<[string, string]> = [
    ["/accounts", "Accounts"],
    ["/send", "Send money"],
    ["/history", "History"],
    ["/devices", "Devices"],
    ...(admin ? ([["/operator", "Operator"]] as Array<[string, string]>) : []),
  ];
  const transferId = /^\/transfers\/([\w-]+)$/.exec(path)?.[1];
  return (
    <>
      {/* biome-ignore lint/a11y/useValidAnchor: a skip link is a link to #content; the click handler only moves focus there as well. */}
      <a
        className="skip"
        href="#content"
        onClick={(event) => {
          event.preventDefault();
          document.getElementById("content")?.focus();
        }}
      >
        Skip to content
      </a>
      <header>
        <p className="brand">VaultPay</p>
        <nav aria-label="Main">
          <ul>
            {links.map(([to, label]) => (
              <li key={to}>
                <a href={`#${to}`} aria-current={path === to ? "page" : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <button type="button" className="signout" onClick={signOut}>
          Sign out <span className="visually-hidden">{session.user.email}</span>
        </button>
      </header>
      <div id="content" tabIndex={-1}>
        {transferId ? (
          <Transfer key={transferId} id={transferId} />
        ) : path === "/send" ? (
          <Send navigate={navigate} />
        ) : path === "/history" ? (
          <History />
        ) : path === "/devices" ? (
          <Devices />
        ) : path === "/operator" ? (
          // Not hidden from customers by the router: the API refuses them, and the page says so.
          <Operator />
        ) : (
          <Accounts />
        )}
      </div>
    </>
  );
}

const currentSessionWasLive = { value: Boolean(currentSession()) };
