import { useEffect, useState } from "preact/hooks";
import type { ConsentDashboardEntry } from "../core/api";
import type { Client } from "../core/client";
import { describeError, go, useClient } from "./hooks";
import { language, setLanguage, t, locale, type Language } from "./i18n";
import { Alert, PaneHeader } from "./parts";

/** What the consent dashboard needs: the records, and signed changes. */
export interface ConsentActions {
  dashboard(): Promise<ConsentDashboardEntry[]>;
  revokeAll(business: string): Promise<void>;
  set(business: string, scope: "utility" | "marketing", state: "opted_in" | "opted_out"): Promise<void>;
}

interface DeviceRow {
  device_id: number;
  name: string | null;
  created_ms: number;
  last_seen_ms: number;
}

export function Settings({ client }: { client: Client }) {
  useClient(client);
  const [devices, setDevices] = useState<DeviceRow[]>([]);
  const [error, setError] = useState("");
  const [lang, setLang] = useState<Language>(language());
  const [permission, setPermission] = useState(typeof Notification === "undefined" ? "unsupported" : Notification.permission);
  const me = client.me;

  const loadDevices = (): void => {
    client.api.devices().then(setDevices, (failure: unknown) => setError(describeError(failure)));
  };
  useEffect(loadDevices, [client]);

  const remove = async (deviceId: number): Promise<void> => {
    try {
      await client.api.removeDevice(deviceId);
      loadDevices();
    } catch (failure) {
      setError(describeError(failure));
    }
  };

  const blocked = client.chats().filter((p) => p.blocked);
  return (
    <section class="settings" aria-label={t("settings.title")}>
      <PaneHeader title={t("settings.title")} onBack={() => go()} />
      <div class="settings-body">
        <h3>{t("settings.account")}</h3>
        <dl>
          <dt>{t("settings.phone")}</dt>
          <dd data-testid="my-phone">{me?.phone}</dd>
          <dt>{t("settings.operator")}</dt>
          <dd>
            <code>{me?.operator_fingerprint}</code>
          </dd>
        </dl>
        <h3>{t("settings.devices")}</h3>
        <ul class="list devices">
          {devices.map((d) => (
            <li key={d.device_id} class="row static">
              <span class="row-text">
                <strong>
                  {d.name || `#${d.device_id}`} {d.device_id === me?.device_id && <em>({t("settings.device")})</em>}
                </strong>
                <small>{new Date(d.last_seen_ms).toLocaleString(locale())}</small>
              </span>
              {d.device_id !== me?.device_id && (
                <button type="button" class="danger small" onClick={() => void remove(d.device_id)}>
                  {t("settings.remove")}
                </button>
              )}
            </li>
          ))}
        </ul>
        <h3>{t("settings.privacy")}</h3>
        <p>
          <a href="#/privacy">{t("privacy.title")} ›</a>
        </p>
        <h3>{t("settings.blocked")}</h3>
        {blocked.length === 0 ? (
          <p class="muted">{t("settings.none_blocked")}</p>
        ) : (
          <ul class="list">
            {blocked.map((p) => (
              <li key={p.account_id} class="row static">
                <span class="row-text">{p.name ?? p.phone}</span>
                <button type="button" class="small" onClick={() => void client.unblock(p.account_id).catch((e: unknown) => setError(describeError(e)))}>
                  ✓
                </button>
              </li>
            ))}
          </ul>
        )}
        <h3>{t("settings.language")}</h3>
        <div class="segmented" role="radiogroup" aria-label={t("settings.language")}>
          {(["en", "de"] as Language[]).map((l) => (
            <button
              key={l}
              type="button"
              role="radio"
              aria-checked={lang === l}
              class={lang === l ? "selected" : ""}
              onClick={() => {
                setLanguage(l);
                setLang(l);
                client.changed();
              }}
            >
              {l === "en" ? "English" : "Deutsch"}
            </button>
          ))}
        </div>
        <h3>{t("settings.notifications")}</h3>
        <label class="check">
          <input
            type="checkbox"
            checked={permission === "granted"}
            disabled={permission === "unsupported" || permission === "denied"}
            onChange={() => {
              if (typeof Notification !== "undefined") void Notification.requestPermission().then(setPermission);
            }}
          />
          {t("settings.notifications_on")}
        </label>
        <h3>{t("settings.sign_out")}</h3>
        <p class="muted">{t("settings.sign_out_note")}</p>
        <button type="button" class="danger" onClick={() => void signOut(client, setError)}>
          {t("settings.sign_out")}
        </button>
        <Alert text={error} />
      </div>
    </section>
  );
}

export async function signOut(client: Client, failed: (message: string) => void): Promise<void> {
  if (!confirm(t("settings.sign_out_confirm"))) return;
  try {
    await client.signOut();
    location.hash = "";
    location.reload();
  } catch (failure) {
    failed(describeError(failure));
  }
}

export function Privacy({ client, consent }: { client: Client; consent: ConsentActions }) {
  const [entries, setEntries] = useState<ConsentDashboardEntry[] | null>(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const load = (): void => {
    consent.dashboard().then(setEntries, (failure: unknown) => setError(describeError(failure)));
  };
  useEffect(load, [consent]);

  const act = async (work: () => Promise<void>): Promise<void> => {
    setBusy(true);
    setError("");
    try {
      await work();
      load();
    } catch (failure) {
      setError(describeError(failure));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="privacy" aria-label={t("privacy.title")}>
      <PaneHeader title={t("privacy.title")} onBack={() => go("settings")} />
      <div class="settings-body">
        <p class="lead">{t("privacy.lead")}</p>
        {entries && entries.length === 0 && <p class="muted">{t("privacy.none")}</p>}
        <ul class="list consents">
          {entries?.map((entry) => (
            <li key={entry.business_account} class="consent" data-testid="consent-entry">
              <div class="consent-head">
                <strong>{entry.display_name}</strong>
                <button
                  type="button"
                  class="danger small"
                  disabled={busy || entry.consents.every((c) => c.state === "opted_out")}
                  onClick={() => void act(() => consent.revokeAll(entry.business_account))}
                >
                  {t("privacy.revoke")}
                </button>
              </div>
              {(["utility", "marketing"] as const).map((scope) => {
                const record = entry.consents.find((c) => c.scope === scope);
                const allowed = record?.state === "opted_in";
                return (
                  <div key={scope} class="consent-scope" data-scope={scope} data-state={record?.state ?? "none"}>
                    <span>
                      {t(scope === "utility" ? "business.consent.utility" : "business.consent.marketing")}:{" "}
                      <strong>{allowed ? t("privacy.opted_in") : t("privacy.opted_out")}</strong>
                      {record?.source === "business" && record.evidence && (
                        <small class="evidence">{t("privacy.source.business", { evidence: record.evidence })}</small>
                      )}
                    </span>
                    <button
                      type="button"
                      class="small"
                      disabled={busy}
                      onClick={() => void act(() => consent.set(entry.business_account, scope, allowed ? "opted_out" : "opted_in"))}
                    >
                      {allowed ? t("privacy.stop") : t("privacy.allow")}
                    </button>
                  </div>
                );
              })}
            </li>
          ))}
        </ul>
        <Alert text={error} />
      </div>
    </section>
  );
}
