import { t } from "./i18n";

/** An error said where it happened; nothing when there is none. */
export function Alert({ text }: { text: string }) {
  if (!text) return null;
  return (
    <p class="error" role="alert">
      {text}
    </p>
  );
}

/** The header of a pane: a way back and its title. */
export function PaneHeader({ title, onBack }: { title: string; onBack: () => void }) {
  return (
    <header class="chat-header">
      <button type="button" class="icon back" aria-label={t("chat.back")} onClick={onBack}>
        ‹
      </button>
      <strong>{title}</strong>
    </header>
  );
}
