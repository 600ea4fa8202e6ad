import { useEffect, useState } from "preact/hooks";
import { Avatar } from "./avatar";
import type { Business, Businesses } from "../core/businesses";
import type { Client } from "../core/client";
import { describeError, go } from "./hooks";
import { Alert, PaneHeader } from "./parts";
import { t } from "./i18n";
import { Tick } from "./business";

export function Find({ client, businesses }: { client: Client; businesses: Businesses }) {
  const [query, setQuery] = useState("");
  const [found, setFound] = useState<Business[] | null>(null);
  const [phone, setPhone] = useState("");
  const [error, setError] = useState("");

  useEffect(() => {
    let current = true;
    const timer = setTimeout(() => {
      businesses.find(query.trim()).then(
        (list) => current && setFound(list),
        (failure: unknown) => current && setError(describeError(failure)),
      );
    }, 200);
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [query, businesses]);

  const start = async (event: Event): Promise<void> => {
    event.preventDefault();
    setError("");
    try {
      go("chat", await client.resolve(phone.trim()));
    } catch (failure) {
      setError(describeError(failure));
    }
  };

  return (
    <section class="find" aria-label={t("find.title")}>
      <PaneHeader title={t("find.title")} onBack={() => go()} />
      <div class="find-body">
        <input
          type="search"
          name="q"
          maxLength={100}
          placeholder={t("find.placeholder")}
          aria-label={t("find.placeholder")}
          value={query}
          onInput={(e) => setQuery((e.target as HTMLInputElement).value)}
        />
        <ul class="list">
          {found?.map((b) => (
            <li key={b.profile.account_id}>
              <button type="button" class="row" onClick={() => go("profile", b.profile.account_id)} data-testid="business-result">
                <Avatar name={b.profile.display_name} account={b.profile.account_id} businesses={businesses} />
                <span class="row-text">
                  <strong>
                    {b.profile.display_name} <Tick tick={b.tick} />
                  </strong>
                  <small>{b.profile.about}</small>
                </span>
              </button>
            </li>
          ))}
        </ul>
        {found && found.length === 0 && <p class="muted">{t("find.none")}</p>}
        <form class="by-phone" onSubmit={start}>
          <label>
            {t("find.phone")}
            <input type="tel" name="phone" maxLength={64} placeholder="+49 …" value={phone} onInput={(e) => setPhone((e.target as HTMLInputElement).value)} />
          </label>
          <button type="submit" disabled={!phone.trim()}>
            {t("find.start")}
          </button>
        </form>
        <Alert text={error} />
      </div>
    </section>
  );
}
