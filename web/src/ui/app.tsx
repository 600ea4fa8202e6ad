import { useEffect, useState } from "preact/hooks";
import { Avatar } from "./avatar";
import type { Businesses } from "../core/businesses";
import type { Client, Peer } from "../core/client";
import { dayOf, Ticks } from "./bubble";
import { Profile, Tick } from "./business";
import { Chat } from "./chat";
import { Find } from "./find";
import { go, useClient, useRoute } from "./hooks";
import { PaneHeader } from "./parts";
import { t } from "./i18n";
import { Register } from "./register";
import { Privacy, Settings, signOut, type ConsentActions } from "./settings";

export interface Services {
  client: Client;
  businesses: Businesses;
  consent: ConsentActions;
  safetyNumber(account: string): Promise<string>;
}

function ChatRow({ services, peer, active }: { services: Services; peer: Peer; active: boolean }) {
  const { client, businesses } = services;
  const business = businesses.cached(peer.account_id);
  const name = peer.name ?? business?.profile.display_name ?? peer.phone ?? peer.account_id.slice(0, 8);
  const last = client.messages.get(peer.account_id)?.at(-1);
  return (
    <li>
      <button
        type="button"
        class={`row chat-row${active ? " active" : ""}`}
        onClick={() => go("chat", peer.account_id)}
        data-testid="chat-row"
        data-account={peer.account_id}
      >
        <Avatar name={name} account={peer.kind === "business" ? peer.account_id : undefined} businesses={businesses} />
        <span class="row-text">
          <span class="row-top">
            <strong>
              {name} {business && <Tick tick={business.tick} />}
            </strong>
            <small class="when">{peer.last_ms ? dayOf(peer.last_ms) : ""}</small>
          </span>
          <span class="row-bottom">
            <small class="preview">
              {last?.outgoing && <Ticks status={last.status} />} {peer.preview}
            </small>
            {peer.unread > 0 && (
              <span class="badge" aria-label={t("chats.unread", { n: peer.unread })} data-testid="unread">
                {peer.unread}
              </span>
            )}
          </span>
        </span>
      </button>
    </li>
  );
}

function Chats({ services, active }: { services: Services; active: string | null }) {
  const { client, businesses } = services;
  const chats = client.chats();
  useEffect(() => {
    for (const peer of chats) if (peer.kind === "business" && !businesses.cached(peer.account_id)) void businesses.get(peer.account_id).catch(() => undefined);
  }, [chats.length, businesses]);
  return (
    <nav class="chats" aria-label={t("chats.title")}>
      <header class="list-header">
        <h1>{t("chats.title")}</h1>
        <span class="header-actions">
          <button type="button" class="icon" aria-label={t("chats.find")} title={t("chats.find")} onClick={() => go("find")}>
            ＋
          </button>
          <button type="button" class="icon" aria-label={t("chats.settings")} title={t("chats.settings")} onClick={() => go("settings")}>
            ⚙
          </button>
        </span>
      </header>
      {chats.length === 0 ? (
        <div class="empty">
          <p>{t("chats.empty")}</p>
          <button type="button" class="primary" onClick={() => go("find")}>
            {t("chats.find")}
          </button>
        </div>
      ) : (
        <ul class="list">
          {chats.map((peer) => (
            <ChatRow key={peer.account_id} services={services} peer={peer} active={peer.account_id === active} />
          ))}
        </ul>
      )}
    </nav>
  );
}

function Safety({ services, account }: { services: Services; account: string }) {
  const { client } = services;
  const [number, setNumber] = useState("");
  const [error, setError] = useState("");
  const peer = client.peer(account);
  const name = peer.name ?? peer.phone ?? account;
  useEffect(() => {
    services.safetyNumber(account).then(setNumber, (e: unknown) => setError(String(e)));
  }, [account, services]);
  return (
    <section class="safety" aria-label={t("safety.title")}>
      <PaneHeader title={t("safety.title")} onBack={() => history.back()} />
      <div class="settings-body">
        <p>{t("safety.lead", { name })}</p>
        <p class="safety-number" data-testid="safety-number">
          {number.split(" ").map((group, i) => (
            <span key={i}>{group}</span>
          ))}
        </p>
        {peer.trust !== "trusted" && (
          <button type="button" class="primary" onClick={() => void client.trustIdentity(account).then(() => go("chat", account))}>
            {t(peer.trust === "changed" ? "chat.identity_trust" : "chat.key_log_trust")}
          </button>
        )}
        {error && <p class="error">{error}</p>}
      </div>
    </section>
  );
}

function Status({ client }: { client: Client }) {
  if (client.problem === "device_removed") {
    return (
      <p class="status-bar error" role="alert">
        {t("app.removed")}{" "}
        <button type="button" class="small" onClick={() => void signOut(client, () => undefined)}>
          {t("settings.sign_out")}
        </button>
      </p>
    );
  }
  const warning = client.keyLogWarning;
  if (warning && warning.account === client.me?.account_id && !warning.forked) {
    return (
      <p class="status-bar error" role="alert" data-testid="key-log-own">
        {t("app.key_log_own", { reason: warning.reason })}
      </p>
    );
  }
  if (client.connected) return null;
  const offline = typeof navigator !== "undefined" && navigator.onLine === false;
  return (
    <p class="status-bar" role="status" data-testid="connection-status">
      {offline ? t("app.offline") : t("app.connecting")}
    </p>
  );
}

export function App({ services }: { services: Services }) {
  const { client, businesses } = services;
  useClient(client);
  const route = useRoute();
  useEffect(() => {
    document.documentElement.dataset["ready"] = "1";
    const w = window as unknown as { __tresenReadyMs?: number };
    w.__tresenReadyMs ??= performance.now();
  }, []);
  if (!client.registered) return <Register client={client} />;
  const [screen, account] = route;
  const chat = screen === "chat" && account ? account : null;
  let main: preact.ComponentChildren = (
    <section class="placeholder">
      <p>🔒 {t("chat.encrypted")}</p>
    </section>
  );
  if (chat) main = <Chat key={chat} client={client} businesses={businesses} chat={chat} />;
  else if (screen === "profile" && account) main = <Profile client={client} businesses={businesses} consent={services.consent} account={account} />;
  else if (screen === "find") main = <Find client={client} businesses={businesses} />;
  else if (screen === "settings") main = <Settings client={client} />;
  else if (screen === "privacy") main = <Privacy client={client} consent={services.consent} />;
  else if (screen === "safety" && account) main = <Safety services={services} account={account} />;
  const detail = screen !== undefined;
  return (
    <div class={`shell${detail ? " detail" : ""}`}>
      <Status client={client} />
      <Chats services={services} active={chat} />
      <main class="pane">{main}</main>
    </div>
  );
}
