import { useEffect, useRef, useState } from "preact/hooks";
import { Avatar } from "./avatar";
import type { Businesses } from "../core/businesses";
import { previewOf, type Client, type Message } from "../core/client";
import { AttachButton, StagedFiles, UploadBubbles, useAttachments } from "./attachments";
import { Bubble, type Extras } from "./bubble";
import { describeError, go, routeParameter, useNow } from "./hooks";
import { t } from "./i18n";
import { BusinessLine, Tick } from "./business";

const TYPING_EVERY_MS = 5_000;

function quoteOf(client: Client, message: Message): string {
  const rendered = message.rendered as { body?: string } | undefined;
  const text = rendered?.body ?? previewOf(client.payloadOf(message) ?? undefined);
  return text.length > 100 ? `${text.slice(0, 100)}…` : text;
}

export function Chat({ client, businesses, chat }: { client: Client; businesses: Businesses; chat: string }) {
  const [messages, setMessages] = useState<Message[]>([]);
  // A deep link may bring a text to send (e.g. START NEWS): ready in the composer, never sent
  // without the user.
  const [draft, setDraft] = useState(() => (routeParameter("text") ?? "").slice(0, 4096));
  const [error, setError] = useState("");
  const [replyTo, setReplyTo] = useState<Message | null>(null);
  const lastTyping = useRef(0);
  const list = useRef<HTMLOListElement>(null);
  const now = useNow(1000);
  const peer = client.peer(chat);
  const business = businesses.cached(chat);
  const attach = useAttachments(client, chat, setError);

  useEffect(() => {
    void client.load(chat).then((loaded) => setMessages([...loaded]));
    void client.learn(chat).then((p) => {
      if (p.kind === "business") void businesses.get(chat).catch(() => undefined);
    });
    return client.subscribe(() => setMessages([...(client.messages.get(chat) ?? [])]));
  }, [client, chat, businesses]);

  useEffect(() => {
    if (document.visibilityState === "visible") void client.markRead(chat).catch(() => undefined);
    list.current?.lastElementChild?.scrollIntoView({ block: "end" });
  }, [messages.length, chat, client]);

  useEffect(() => {
    const seen = (): void => {
      if (document.visibilityState === "visible") void client.markRead(chat).catch(() => undefined);
    };
    document.addEventListener("visibilitychange", seen);
    return () => document.removeEventListener("visibilitychange", seen);
  }, [client, chat]);

  const send = async (event: Event): Promise<void> => {
    event.preventDefault();
    const text = draft.trim();
    if (!text) return;
    setDraft("");
    setError("");
    const quoting = replyTo ?? undefined;
    setReplyTo(null);
    try {
      await client.sendText(chat, text, quoting);
    } catch (failure) {
      setDraft(text);
      setError(describeError(failure));
    }
  };

  const typed = (value: string): void => {
    setDraft(value);
    if (value && Date.now() - lastTyping.current > TYPING_EVERY_MS) {
      lastTyping.current = Date.now();
      void client.sendTyping(chat).catch(() => undefined);
    }
  };

  const choose = async (message: Message, option: { id: string; title: string; description?: string }): Promise<void> => {
    setError("");
    try {
      await client.answer(chat, message, option);
    } catch (failure) {
      setError(describeError(failure));
    }
  };

  const act = async (work: () => Promise<unknown>): Promise<void> => {
    setError("");
    try {
      await work();
    } catch (failure) {
      setError(describeError(failure));
    }
  };

  const answered = new Set<string>();
  // Reactions are not bubbles of their own: each person's latest one shows on its message.
  const reactions = new Map<string, Map<string, string>>();
  const shown: Message[] = [];
  const byId = new Map(messages.map((m) => [m.id, m]));
  for (const m of messages) {
    const p = client.payloadOf(m);
    if (p?.t === "reaction" && m.status !== "failed") {
      const who = reactions.get(p.message_id) ?? new Map<string, string>();
      who.set(m.outgoing ? "me" : m.sender, p.emoji);
      reactions.set(p.message_id, who);
      continue;
    }
    if (m.outgoing && (p?.t === "interactive_reply" || p?.t === "button_reply")) answered.add(p.message_id);
    shown.push(m);
  }
  const extrasOf = (m: Message): Extras => {
    const who = reactions.get(m.id);
    const p = client.payloadOf(m);
    const context = p && "context" in p ? p.context : undefined;
    const target = context ? byId.get(context.message_id) : undefined;
    return {
      reactions: [...(who?.values() ?? [])].filter(Boolean),
      mine: who?.get("me") || null,
      quoted: context
        ? {
            text: target ? quoteOf(client, target) : "…",
            name: target && !target.outgoing ? name : t("chat.you"),
            mine: target?.outgoing ?? false,
          }
        : null,
      onReact: (message, emoji) => void act(() => client.react(chat, message, emoji)),
      onReply: (message) => setReplyTo(message),
    };
  };
  const typing = client.typing.get(chat);
  const isTyping = typing !== undefined && typing.until > now;
  const name = peer.name ?? business?.profile.display_name ?? peer.phone ?? chat.slice(0, 8);

  return (
    <section class={attach.dragging ? "chat dropping" : "chat"} aria-label={name} {...(peer.blocked ? {} : attach.dropZone)}>
      <header class="chat-header">
        <button type="button" class="icon back" aria-label={t("chat.back")} onClick={() => go()}>
          ‹
        </button>
        <button type="button" class="who" onClick={() => go("profile", chat)}>
          <Avatar name={name} account={peer.kind === "business" ? chat : undefined} businesses={businesses} />
          <span class="who-text">
            <strong class="name" data-testid="chat-name">
              {name} {business && <Tick tick={business.tick} />}
            </strong>
            <small class="sub">{isTyping ? t("chat.typing") : business ? <BusinessLine business={business} now={now} /> : peer.phone}</small>
          </span>
        </button>
      </header>
      {peer.trust !== "trusted" && (
        <div class="banner warning" role="alert" data-testid={peer.trust === "changed" ? "identity-changed" : "key-log-failed"}>
          <p>
            {peer.trust === "changed"
              ? t("chat.identity_changed")
              : t(peer.key_log_forked ? "chat.key_log_forked" : "chat.key_log_failed")}
          </p>
          <button type="button" onClick={() => go("safety", chat)}>
            {t("chat.safety")}
          </button>
        </div>
      )}
      <ol class="messages" ref={list} aria-live="polite">
        <li class="e2e-note">🔒 {t("chat.encrypted")}</li>
        {shown.map((m) => (
          <Bubble
            key={m.id}
            client={client}
            message={m}
            answered={answered.has(m.id)}
            onChoose={(msg, o) => void choose(msg, o)}
            onQuickReply={(msg, b) => void act(() => client.tapQuickReply(chat, msg, b.payload ?? b.text, b.text))}
            extras={extrasOf(m)}
          />
        ))}
        <UploadBubbles client={client} chat={chat} />
        {client.notices.get(chat) && (
          <li class="system-note" role="status" data-testid="chat-notice">
            {client.notices.get(chat)}
          </li>
        )}
        {isTyping && (
          <li class="bubble in typing" aria-label={t("chat.typing")}>
            <span class="dots">•••</span>
          </li>
        )}
      </ol>
      {error && (
        <p class="error composer-error" role="alert">
          {error}
        </p>
      )}
      {!peer.blocked && <StagedFiles attach={attach} />}
      {peer.blocked ? (
        <p class="banner">{t("chat.blocked")}</p>
      ) : (
        <>
        {replyTo && (
          <div class="replying" data-testid="replying">
            <span>
              <small>{t("chat.replying_to")}</small> {quoteOf(client, replyTo)}
            </span>
            <button type="button" class="icon" aria-label={t("chat.cancel_reply")} onClick={() => setReplyTo(null)}>
              ×
            </button>
          </div>
        )}
        <form class="composer" onSubmit={send}>
          <AttachButton attach={attach} />
          <textarea
            name="message"
            rows={1}
            maxLength={4096}
            placeholder={t("chat.placeholder")}
            value={draft}
            aria-label={t("chat.placeholder")}
            onInput={(e) => typed((e.target as HTMLTextAreaElement).value)}
            onPaste={attach.onPaste}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey) {
                e.preventDefault();
                void send(e);
              }
            }}
          />
          <button type="submit" class="primary send" disabled={!draft.trim()} aria-label={t("chat.send")}>
            ➤
          </button>
        </form>
        </>
      )}
    </section>
  );
}
