import type { Client, Message } from "../core/client";
import type { RenderedButton, RenderedTemplate } from "../wire/templates";
import { attachedFile, type Payload } from "../wire/payloads";
import { FileView } from "./attachments";
import { t, locale, type Key } from "./i18n";

/** What an avatar shows: a name's first letter, or a number's last two digits. */
export function initials(name: string): string {
  if (/^\+?[\d\s]+$/.test(name)) return name.replace(/\D/g, "").slice(-2);
  return Array.from(name)[0]?.toUpperCase() ?? "?";
}

export function timeOf(ms: number): string {
  return new Date(ms).toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit" });
}

export function dayOf(ms: number): string {
  const date = new Date(ms);
  const today = new Date();
  if (date.toDateString() === today.toDateString()) return timeOf(ms);
  const yesterday = new Date(today.getTime() - 86_400_000);
  if (date.toDateString() === yesterday.toDateString()) return t("time.yesterday");
  return date.toLocaleDateString(locale(), { day: "2-digit", month: "2-digit", year: "2-digit" });
}

const TICKS: Record<string, [string, Key]> = {
  pending: ["⏱", "chat.pending"],
  sent: ["✓", "chat.sent"],
  delivered: ["✓✓", "chat.delivered"],
  read: ["✓✓", "chat.read"],
  failed: ["✗", "chat.failed"],
  waiting: ["⟳", "chat.resending"],
};

export function Ticks({ status }: { status: string }) {
  const tick = TICKS[status];
  if (!tick) return null;
  return (
    <span class={`ticks ticks-${status}`} title={t(tick[1])} aria-label={t(tick[1])} data-status={status}>
      {tick[0]}
    </span>
  );
}

function TemplateView({
  rendered,
  answered,
  onQuickReply,
  file,
}: {
  rendered: RenderedTemplate;
  answered: boolean;
  onQuickReply: (button: RenderedButton) => void;
  /** The header's file, shown in place of the sender's reference to it. */
  file?: preact.ComponentChildren;
}) {
  const header = rendered.header;
  return (
    <div class="template" data-testid="template" data-template={rendered.name}>
      {header?.text !== undefined && <strong class="template-header">{header.text}</strong>}
      {header && header.text === undefined && (file ?? <div class="template-media">📎 {header.format.toLowerCase()}</div>)}
      <p class="body">{rendered.body}</p>
      {rendered.footer && <small class="footer">{rendered.footer}</small>}
      {rendered.buttons.length > 0 && (
        <div class="template-buttons">
          {rendered.buttons.map((b, i) => {
            if (b.type === "URL" && b.url) {
              return (
                <a key={i} class="option" href={b.url} target="_blank" rel="noopener noreferrer">
                  ↗ {b.text}
                </a>
              );
            }
            if (b.type === "PHONE_NUMBER" && b.phone_number) {
              return (
                <a key={i} class="option" href={`tel:${b.phone_number}`}>
                  ☎ {b.text}
                </a>
              );
            }
            if ((b.type === "COPY_CODE" || b.type === "OTP") && b.code) {
              const code = b.code;
              return (
                <button key={i} type="button" class="option" onClick={() => void navigator.clipboard?.writeText(code)}>
                  ⧉ {b.text}
                </button>
              );
            }
            return (
              <button key={i} type="button" class="option" disabled={answered} onClick={() => onQuickReply(b)}>
                {b.text}
              </button>
            );
          })}
        </div>
      )}
    </div>
  );
}

interface Option {
  id: string;
  title: string;
  description?: string;
}

function options(p: Record<string, unknown>): Option[] {
  if (p["type"] === "button") return (p["buttons"] as Option[]) ?? [];
  const sections = (p["sections"] as { title?: string; rows: Option[] }[]) ?? [];
  return sections.flatMap((s) => s.rows);
}

export function Bubble({
  client,
  message,
  answered,
  onChoose,
  onQuickReply,
  extras,
}: {
  client: Client;
  message: Message;
  answered: boolean;
  onChoose: (message: Message, option: Option) => void;
  onQuickReply: (message: Message, button: RenderedButton) => void;
  extras?: Extras;
}) {
  const payload = client.payloadOf(message) as (Record<string, unknown> & { t: string }) | null;
  const media = payload ? attachedFile(payload as unknown as Payload) : undefined;
  const file = media && <FileView client={client} message={message} media={media} />;
  let content: preact.ComponentChildren;
  if (message.status === "failed" && !message.outgoing) {
    content = (
      <p class="notice">
        {message.error?.startsWith("template_mismatch")
          ? t("chat.template_refused")
          : message.error?.startsWith("could not be decrypted")
            ? t("chat.undecryptable")
            : t("chat.refused", { reason: message.error ?? "" })}
      </p>
    );
  } else if (message.status === "waiting") {
    content = <p class="notice">{t("chat.waiting")}</p>;
  } else if (message.rendered) {
    content = (
      <TemplateView
        rendered={message.rendered as RenderedTemplate}
        answered={answered}
        onQuickReply={(button) => onQuickReply(message, button)}
        file={file}
      />
    );
  } else if (!payload) {
    content = <p class="notice">{t("chat.unsupported")}</p>;
  } else if (payload.t === "text") {
    content = <p class="body">{String(payload["text"])}</p>;
  } else if (payload.t === "interactive") {
    const choice = (option: Option) => (
      <button
        key={option.id}
        type="button"
        class="option"
        disabled={message.outgoing || answered}
        onClick={() => onChoose(message, option)}
      >
        {option.title}
        {option.description && <small>{option.description}</small>}
      </button>
    );
    const sections = (payload["sections"] as { title?: string; rows: Option[] }[] | undefined) ?? [];
    content = (
      <div class="interactive">
        {file}
        {typeof payload["header"] === "string" && <strong>{payload["header"]}</strong>}
        <p class="body">{String(payload["body"])}</p>
        {typeof payload["footer"] === "string" && <small class="footer">{payload["footer"]}</small>}
        {payload["type"] === "list" ? (
          // A list opens from its menu button, its rows under their sections' titles.
          <details class="list-menu">
            <summary class="option">☰ {String(payload["button"] ?? t("chat.choose"))}</summary>
            {sections.map((section, i) => (
              <div key={i} class="options" role="group" aria-label={section.title ?? undefined}>
                {section.title && <small class="section-title">{section.title}</small>}
                {section.rows.map(choice)}
              </div>
            ))}
          </details>
        ) : (
          <div class="options" role="group">
            {options(payload).map(choice)}
          </div>
        )}
      </div>
    );
  } else if (payload.t === "interactive_reply" || payload.t === "button_reply") {
    content = <p class="body reply">↩ {String(payload["title"] ?? payload["text"] ?? "")}</p>;
  } else if (payload.t === "media") {
    content = file;
  } else if (payload.t === "reaction") {
    content = <p class="body reaction">{String(payload["emoji"] ?? "")}</p>;
  } else {
    content = <p class="notice">{t("chat.unsupported")}</p>;
  }
  const shown = message.status !== "failed" && message.status !== "waiting" && !message.id.startsWith("local-");
  return (
    <li
      class={`bubble ${message.outgoing ? "out" : "in"}`}
      tabIndex={0}
      data-message-id={message.id}
      data-status={message.status}
    >
      {extras?.quoted && (
        <blockquote class="quoted" data-testid="quoted">
          <small>{extras.quoted.mine ? t("chat.you") : extras.quoted.name}</small>
          {extras.quoted.text}
        </blockquote>
      )}
      {content}
      <span class="meta">
        {timeOf(message.ms)}
        {message.outgoing && <Ticks status={message.status} />}
      </span>
      {message.outgoing && message.status === "failed" && message.error && <small class="error">{message.error}</small>}
      {extras && extras.reactions.length > 0 && (
        <span class="reactions" data-testid="reactions" aria-label={t("chat.reactions")}>
          {extras.reactions.join(" ")}
        </span>
      )}
      {extras && shown && (
        <span class="bubble-actions">
          <button type="button" class="icon small-icon" aria-label={t("chat.reply")} title={t("chat.reply")} onClick={() => extras.onReply(message)}>
            ↩
          </button>
          <details class="react">
            <summary class="icon small-icon" aria-label={t("chat.react")} title={t("chat.react")}>
              ☺
            </summary>
            <span class="react-choices">
              {REACTIONS.map((emoji) => (
                <button
                  key={emoji}
                  type="button"
                  class="icon"
                  aria-label={emoji}
                  onClick={(event) => {
                    (event.currentTarget.closest("details") as HTMLDetailsElement | null)?.removeAttribute("open");
                    extras.onReact(message, extras.mine === emoji ? "" : emoji);
                  }}
                >
                  {emoji}
                </button>
              ))}
            </span>
          </details>
        </span>
      )}
    </li>
  );
}

export const REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];

/** What a bubble shows beside its own content: reactions to it, the message it quotes, and
 * the actions on it. */
export interface Extras {
  reactions: string[];
  /** This user's own reaction to it, if any. */
  mine: string | null;
  quoted: { text: string; name: string; mine: boolean } | null;
  onReact(message: Message, emoji: string): void;
  onReply(message: Message): void;
}
