import { useEffect, useState } from "preact/hooks";
import type { Client } from "../core/client";
import { fromBase64 } from "../wire/base64";
import { describeError } from "./hooks";
import { Alert } from "./parts";
import { t } from "./i18n";

interface PublishedKeys {
  current_key_id: string;
  keys: { key_id: string; public_key: string }[];
}

/** The whole SHA-256 of the raw key in hex, in groups of four (as the terminal app shows). */
export async function keyFingerprint(publicKey: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", fromBase64(publicKey) as BufferSource));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  return hex.match(/.{4}/g)?.join(" ") ?? hex;
}

export function Register({ client }: { client: Client }) {
  const [step, setStep] = useState<"phone" | "code">("phone");
  const [phone, setPhone] = useState("");
  const [code, setCode] = useState("");
  const [deviceName, setDeviceName] = useState(t("register.device_default"));
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [operator, setOperator] = useState<{ key: string; fingerprint: string } | null>(null);

  useEffect(() => {
    void (async () => {
      try {
        const published = (await client.api.operatorKeys()) as PublishedKeys;
        const current = published.keys.find((k) => k.key_id === published.current_key_id);
        if (current) setOperator({ key: current.public_key, fingerprint: await keyFingerprint(current.public_key) });
      } catch (failure) {
        setError(describeError(failure));
      }
    })();
  }, [client]);

  const sendCode = async (event: Event): Promise<void> => {
    event.preventDefault();
    setBusy(true);
    setError("");
    try {
      await client.requestCode(phone.trim());
      setStep("code");
    } catch (failure) {
      setError(describeError(failure));
    } finally {
      setBusy(false);
    }
  };

  const verify = async (event: Event): Promise<void> => {
    event.preventDefault();
    if (!operator) return;
    setBusy(true);
    setError("");
    try {
      await client.register(phone.trim(), code.trim(), deviceName.trim(), operator);
    } catch (failure) {
      setError(describeError(failure));
      setBusy(false);
    }
  };

  return (
    <main class="register">
      <div class="register-card">
        <div class="brand" aria-hidden="true">
          <img src="/app/icon.svg" alt="" width={56} height={56} />
        </div>
        <h1>{t("register.title")}</h1>
        {step === "phone" ? (
          <form onSubmit={sendCode}>
            <p class="lead">{t("register.lead")}</p>
            <label>
              {t("register.phone")}
              <input
                name="phone"
                type="tel"
                autocomplete="tel"
                inputMode="tel"
                required
                maxLength={64}
                value={phone}
                placeholder="+49 151 12345678"
                aria-describedby="phone-hint"
                onInput={(e) => setPhone((e.target as HTMLInputElement).value)}
              />
            </label>
            <small id="phone-hint" class="hint">
              {t("register.phone_hint")}
            </small>
            <button type="submit" class="primary" disabled={busy || !phone.trim()}>
              {t("register.send_code")}
            </button>
          </form>
        ) : (
          <form onSubmit={verify}>
            <label>
              {t("register.code")}
              <input
                name="code"
                inputMode="numeric"
                autocomplete="one-time-code"
                required
                maxLength={12}
                value={code}
                aria-describedby="code-hint"
                onInput={(e) => setCode((e.target as HTMLInputElement).value)}
              />
            </label>
            <small id="code-hint" class="hint">
              {t("register.code_hint", { phone })}
            </small>
            <label>
              {t("register.device")}
              <input
                name="device"
                maxLength={64}
                value={deviceName}
                onInput={(e) => setDeviceName((e.target as HTMLInputElement).value)}
              />
            </label>
            <p class="note">{t("register.link_note")}</p>
            <button type="submit" class="primary" disabled={busy || !code.trim() || !operator}>
              {busy ? t("register.working") : t("register.verify")}
            </button>
            <button type="button" class="link" onClick={() => setStep("phone")}>
              {t("register.back")}
            </button>
          </form>
        )}
        <Alert text={error} />
        {operator && (
          <details class="operator">
            <summary>{t("register.operator")}</summary>
            <code data-testid="operator-fingerprint">{operator.fingerprint}</code>
            <small>{t("register.operator_note")}</small>
          </details>
        )}
      </div>
    </main>
  );
}
