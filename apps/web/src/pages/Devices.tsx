/** Who am I, and the devices that signed in as me — this browser marked. */
import { useEffect, useState } from "react";
import { thisDevice } from "../device.ts";
import { Me } from "../operations.ts";
import { ErrorNotice, Loading, PageHeading, formatDateTime, useQuery } from "../ui.tsx";

export function Devices() {
  const me = useQuery(Me, {});
  // The label this browser sends as deviceId is random per browser, so it tells this device apart
  // (the contract's Device has no key thumbprint to compare).
  const [thisLabel, setThisLabel] = useState<string>();
  useEffect(() => {
    void thisDevice().then((device) => setThisLabel(device.label));
  }, []);
  return (
    <main>
      <PageHeading>Profile and devices</PageHeading>
      <ErrorNotice error={me.error} onRetry={me.reload} />
      {!me.data && me.loading && <Loading what="your profile" />}
      {me.data && (
        <>
          <p>
            Signed in as <strong>{me.data.me.email}</strong>
            {me.data.me.maskedPhone && <> · mobile {me.data.me.maskedPhone}</>}
          </p>
          <h2>Devices</h2>
          <ul className="cards">
            {me.data.me.devices.map((device) => (
              <li key={device.id} className="card">
                <h3>
                  {device.label ?? "Unnamed device"} {device.label === thisLabel && <span className="badge">this device</span>}
                </h3>
                <p className="hint">
                  First seen {formatDateTime(device.firstSeenAt)}, last seen {formatDateTime(device.lastSeenAt)}
                  {device.trusted ? " · trusted (came back for another sign-in)" : ""}
                </p>
              </li>
            ))}
          </ul>
        </>
      )}
    </main>
  );
}
