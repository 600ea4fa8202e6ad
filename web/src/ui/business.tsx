import { useEffect, useState } from "preact/hooks";
import { Avatar } from "./avatar";
import type { Business, Businesses, Tick as TickInfo } from "../core/businesses";
import type { ConsentRecord } from "../core/api";
import type { Client } from "../core/client";
import type { ConsentActions } from "./settings";
import { describeError, go, useNow } from "./hooks";
import { locale, t, type Key } from "./i18n";
import { Alert, PaneHeader } from "./parts";

export function Tick({ tick }: { tick: TickInfo }) {
  if (!tick.verified) return null;
  return (
    <span class="tick" title={t("chat.verified")} aria-label={t("chat.verified")} data-testid="verified-tick">
      ✔
    </span>
  );
}

function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit" });
}

function when(ms: number, now: number): string {
  const sameDay = new Date(ms).toDateString() === new Date(now).toDateString();
  if (sameDay) return clock(ms);
  return new Date(ms).toLocaleString(locale(), { weekday: "short", hour: "2-digit", minute: "2-digit" });
}

/** "Open now · closes at 22:00" from what the relay computed in the business's time zone. */
export function BusinessLine({ business, now }: { business: Business; now: number }) {
  const { open_now: open, next_change_ms: next } = business.profile;
  if (open === null || open === undefined) return <>{t("chat.business")}</>;
  const change = typeof next === "number" && next > now ? next : null;
  return (
    <span class={open ? "open" : "closed"} data-testid="open-now">
      {open ? t("chat.open_now") : t("chat.closed_now")}
      {change !== null && ` · ${open ? t("chat.closes_at", { time: when(change, now) }) : t("chat.opens_at", { time: when(change, now) })}`}
    </span>
  );
}

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as const;

function dayName(index: number): string {
  // 2024-01-01 was a Monday.
  return new Date(Date.UTC(2024, 0, 1 + index)).toLocaleDateString(locale(), { weekday: "long", timeZone: "UTC" });
}

function Consents({ consent, account }: { consent: ConsentActions; account: string }) {
  const [records, setRecords] = useState<ConsentRecord[] | null>(null);
  const [error, setError] = useState("");
  // What a click asked for, shown (and the box held) until the relay's answer is loaded.
  const [pending, setPending] = useState<Partial<Record<"utility" | "marketing", boolean>>>({});
  const load = (): Promise<void> =>
    consent.dashboard().then(
      (entries) => setRecords(entries.find((e) => e.business_account === account)?.consents ?? []),
      (failure: unknown) => setError(describeError(failure)),
    );
  useEffect(() => {
    void load();
  }, [consent, account]);
  const flip = async (scope: "utility" | "marketing", allowed: boolean): Promise<void> => {
    setError("");
    setPending((now) => ({ ...now, [scope]: !allowed }));
    try {
      await consent.set(account, scope, allowed ? "opted_out" : "opted_in");
      await load();
    } catch (failure) {
      setError(describeError(failure));
    } finally {
      setPending((now) => {
        const rest = { ...now };
        delete rest[scope];
        return rest;
      });
    }
  };
  if (records === null) return null;
  return (
    <fieldset class="consents-here">
      <legend>{t("business.consent")}</legend>
      {(["utility", "marketing"] as const).map((scope) => {
        const allowed = records.find((r) => r.scope === scope)?.state === "opted_in";
        return (
          <label key={scope} class="check" data-scope={scope}>
            <input
              type="checkbox"
              checked={pending[scope] ?? allowed}
              disabled={pending[scope] !== undefined}
              onChange={() => void flip(scope, allowed)}
            />
            {t(scope === "utility" ? "business.consent.utility" : "business.consent.marketing")}
          </label>
        );
      })}
      <Alert text={error} />
    </fieldset>
  );
}

export function Profile({
  client,
  businesses,
  consent,
  account,
}: {
  client: Client;
  businesses: Businesses;
  consent: ConsentActions;
  account: string;
}) {
  const [business, setBusiness] = useState<Business | null>(businesses.cached(account) ?? null);
  const [error, setError] = useState("");
  const [notice, setNotice] = useState("");
  const now = useNow(30_000);
  const peer = client.peer(account);

  useEffect(() => {
    businesses.get(account, true).then(setBusiness, (failure: unknown) => setError(describeError(failure)));
  }, [account, businesses]);

  const act = async (work: () => Promise<unknown>, done?: string): Promise<void> => {
    setError("");
    setNotice("");
    try {
      await work();
      if (done) setNotice(done);
    } catch (failure) {
      setError(describeError(failure));
    }
  };

  if (!business) {
    return <section class="profile">{error ? <p class="error">{error}</p> : <p class="muted">…</p>}</section>;
  }
  const p = business.profile;
  const reason = `business.tick_reason.${business.tick.reason}` as Key;
  return (
    <section class="profile" aria-label={p.display_name}>
      <PaneHeader title={t("chat.profile")} onBack={() => history.back()} />
      <div class="profile-body">
        <Avatar name={p.display_name} account={account} businesses={businesses} large />
        <h2 data-testid="profile-name">
          {p.display_name} <Tick tick={business.tick} />
        </h2>
        <p class={business.tick.verified ? "verified-note" : "muted"} data-testid="tick-reason">
          {t(reason)}
        </p>
        <p>
          <BusinessLine business={business} now={now} />
        </p>
        {p.about && <p class="about">{p.about}</p>}
        {p.description && <p>{p.description}</p>}
        <dl>
          {p.address && (
            <>
              <dt>{t("business.address")}</dt>
              <dd>{p.address}</dd>
            </>
          )}
          {p.email && (
            <>
              <dt>{t("business.email")}</dt>
              <dd>
                <a href={`mailto:${p.email}`}>{p.email}</a>
              </dd>
            </>
          )}
          {(p.websites ?? []).map((site) => (
            <>
              <dt>{t("business.website")}</dt>
              <dd>
                <a href={site} target="_blank" rel="noopener noreferrer">
                  {site}
                </a>
              </dd>
            </>
          ))}
        </dl>
        {p.hours && (
          <details class="hours">
            <summary>{t("business.hours")}</summary>
            <table>
              <tbody>
                {DAYS.map((day, i) => (
                  <tr key={day}>
                    <th scope="row">{dayName(i)}</th>
                    <td>
                      {(p.hours?.[day] ?? []).length === 0
                        ? t("business.closed")
                        : (p.hours?.[day] ?? []).map(([from, to]) => `${from}–${to}`).join(", ")}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        )}
        <Consents consent={consent} account={account} />
        <div class="actions">
          <button type="button" class="primary" onClick={() => go("chat", account)}>
            {t("business.message")}
          </button>
          {peer.blocked ? (
            <button type="button" onClick={() => void act(() => client.unblock(account))}>
              {t("business.unblock")}
            </button>
          ) : (
            <button type="button" onClick={() => void act(() => client.block(account))}>
              {t("business.block")}
            </button>
          )}
          <button type="button" class="danger" onClick={() => void act(() => client.report(account, "spam", true), t("business.reported"))}>
            {t("business.report_and_block")}
          </button>
        </div>
        {notice && (
          <p class="notice" role="status">
            {notice}
          </p>
        )}
        <Alert text={error} />
      </div>
    </section>
  );
}
