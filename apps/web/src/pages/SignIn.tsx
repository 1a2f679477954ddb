/** Register or sign in, then the OTP step; the session is bound to this browser's key (DPoP). */
import { useState, type FormEvent } from "react";
import { request, setSession } from "../api.ts";
import { thisDevice } from "../device.ts";
import { ApiError } from "../errors.ts";
import { DevMailbox, Login, Register, VerifyOtp, type OtpChallenge } from "../operations.ts";
import { ErrorNotice, PageHeading, useAction } from "../ui.tsx";

type Mode = "signin" | "register";

export function SignIn({ notice }: { notice?: string | undefined }) {
  const [mode, setMode] = useState<Mode>("signin");
  const [email, setEmail] = useState("");
  const [challenge, setChallenge] = useState<OtpChallenge>();
  if (challenge) return <OtpStep email={email} challenge={challenge} onBack={() => setChallenge(undefined)} />;
  return (
    <main className="narrow">
      <PageHeading>{mode === "signin" ? "Sign in to VaultPay" : "Open a VaultPay profile"}</PageHeading>
      {notice && (
        <p role="status" className="notice">
          {notice}
        </p>
      )}
      <CredentialsForm mode={mode} email={email} setEmail={setEmail} onChallenge={setChallenge} />
      <p>
        {mode === "signin" ? "New to VaultPay? " : "Already registered? "}
        <button type="button" className="link" onClick={() => setMode(mode === "signin" ? "register" : "signin")}>
          {mode === "signin" ? "Register" : "Sign in"}
        </button>
      </p>
    </main>
  );
}

function CredentialsForm(props: {
  mode: Mode;
  email: string;
  setEmail: (email: string) => void;
  onChallenge: (challenge: OtpChallenge) => void;
}) {
  const [phone, setPhone] = useState("");
  const [password, setPassword] = useState("");
  const { busy, error, run } = useAction();
  function submit(event: FormEvent) {
    event.preventDefault();
    void run(async () => {
      const deviceId = (await thisDevice()).label;
      const challenge =
        props.mode === "register"
          ? (await request(Register, { email: props.email, phone, password, deviceId })).register
          : (await request(Login, { email: props.email, password, deviceId })).login;
      props.onChallenge(challenge);
    });
  }
  return (
    <form onSubmit={submit} aria-label={props.mode === "signin" ? "Sign in" : "Register"}>
      <label htmlFor="email">Email</label>
      <input
        id="email"
        type="email"
        autoComplete="username"
        required
        value={props.email}
        onChange={(event) => props.setEmail(event.target.value)}
      />
      {props.mode === "register" && (
        <>
          <label htmlFor="phone">Mobile number (with country code)</label>
          <input
            id="phone"
            type="tel"
            autoComplete="tel"
            required
            placeholder="+919800000001"
            value={phone}
            onChange={(event) => setPhone(event.target.value)}
          />
        </>
      )}
      <label htmlFor="password">Password</label>
      <input
        id="password"
        type="password"
        autoComplete={props.mode === "register" ? "new-password" : "current-password"}
        required
        minLength={12}
        aria-describedby={props.mode === "register" ? "password-hint" : undefined}
        value={password}
        onChange={(event) => setPassword(event.target.value)}
      />
      {props.mode === "register" && (
        <p id="password-hint" className="hint">
          At least 12 characters and hard to guess: a few unrelated words with a number work well.
        </p>
      )}
      <ErrorNotice error={error} />
      <button type="submit" disabled={busy}>
        {busy ? "Please wait…" : props.mode === "signin" ? "Continue" : "Register"}
      </button>
    </form>
  );
}

function OtpStep({ email, challenge, onBack }: { email: string; challenge: OtpChallenge; onBack: () => void }) {
  const [code, setCode] = useState("");
  const { busy, error, run } = useAction();
  const [mailbox, setMailbox] = useState<string>();
  function submit(event: FormEvent) {
    event.preventDefault();
    void run(async () => {
      const deviceId = (await thisDevice()).label;
      setSession((await request(VerifyOtp, { challengeId: challenge.challengeId, code: code.trim(), deviceId })).verifyOtp);
    });
  }
  async function readDevMailbox() {
    try {
      const messages = (await request(DevMailbox, { to: email })).devMailbox;
      const latest = [...messages].sort((a, b) => b.sentAt.localeCompare(a.sentAt)).find((message) => message.code);
      if (latest?.code) {
        setCode(latest.code);
        setMailbox(`The dev mailbox holds the code ${latest.code}; it is filled in for you.`);
      } else setMailbox("The dev mailbox has no code for this address yet.");
    } catch (caught) {
      setMailbox(
        caught instanceof ApiError && caught.code === "FORBIDDEN"
          ? "There is no dev mailbox on this server: look in your email or SMS."
          : "The dev mailbox could not be read.",
      );
    }
  }
  return (
    <main className="narrow">
      <PageHeading>Enter your one-time code</PageHeading>
      <p>
        We sent a 6-digit code by {challenge.channel.toLowerCase()} for {email}. It expires at{" "}
        {new Date(challenge.expiresAt).toLocaleTimeString("en-IN")}.
      </p>
      <div className="notice">
        <p>
          Running VaultPay for development? Nothing is really sent: the code is in the dev mailbox (the <code>devMailbox(to:)</code> query).
        </p>
        <button type="button" onClick={readDevMailbox}>
          Read the code from the dev mailbox
        </button>
        {mailbox && <p role="status">{mailbox}</p>}
      </div>
      <form onSubmit={submit} aria-label="One-time code">
        <label htmlFor="otp">One-time code</label>
        <input
          id="otp"
          inputMode="numeric"
          autoComplete="one-time-code"
          pattern="[0-9]{6}"
          required
          value={code}
          onChange={(event) => setCode(event.target.value)}
        />
        <ErrorNotice error={error} />
        <button type="submit" disabled={busy}>
          {busy ? "Checking…" : "Verify and sign in"}
        </button>
      </form>
      <button type="button" className="link" onClick={onBack}>
        Back
      </button>
    </main>
  );
}
