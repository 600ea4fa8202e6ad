// Files in the conversation: choosing them (attach button, drag and drop, pasting a picture),
// the tray where they wait with a caption, the outgoing bubble of an upload with its
// progress, and what a received file shows: pictures inline (the thumbnail first, then the
// picture itself), video and sound players, documents as a card with a Download button,
// stickers small, and a notice when a file is not the one its sender described.

import { useEffect, useRef, useState } from "preact/hooks";
import type { JSX } from "preact";
import { Offline, RelayError } from "../core/api";
import type { Client, Message } from "../core/client";
import {
  AttachmentUnavailable,
  DOCUMENT_LIMIT_BYTES,
  filesOf,
  FileTooLarge,
  MEDIA_LIMIT_BYTES,
  planFile,
  thumbnailUrl,
  type OpenedFile,
  type Upload,
} from "../core/files";
import { AttachmentCorrupt, AttachmentDigestMismatch } from "../crypto/attachments";
import { attachedFile, type Media, type MediaKind } from "../wire/payloads";
import { describeError } from "./hooks";
import { locale, t, type Key } from "./i18n";
import { Ticks } from "./bubble";

const QUOTA_EXCEEDED = 150071;
const RATE_LIMITED = 4;

/** "23 KB", "1,4 MB": sizes as the limits are counted (1 MB = 1024 KB). */
export function formatBytes(bytes: number): string {
  const format = new Intl.NumberFormat(locale(), { maximumFractionDigits: 1 });
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${format.format(bytes / 1024)} KB`;
  return `${format.format(bytes / (1024 * 1024))} MB`;
}

const KIND_NAMES: Record<MediaKind, Key> = {
  image: "file.photo",
  video: "file.video",
  audio: "file.audio",
  sticker: "file.sticker",
  document: "file.document",
};

const KIND_ICONS: Record<MediaKind, string> = { image: "📷", video: "🎥", audio: "🎤", sticker: "🏷", document: "📄" };

/** Why a file could not be sent, in the user's words. */
export function describeSendError(error: unknown): string {
  if (error instanceof Offline || error instanceof TypeError) return t("file.no_connection");
  if (error instanceof RelayError && error.code === QUOTA_EXCEEDED) return t("file.quota");
  if (error instanceof RelayError && error.code === RATE_LIMITED) return t("file.rate");
  return describeError(error);
}

/** What a file that cannot be shown says instead. */
function describeOpenError(error: unknown): string {
  if (error instanceof AttachmentDigestMismatch || error instanceof AttachmentCorrupt) return t("file.damaged");
  if (error instanceof AttachmentUnavailable) return t("file.gone");
  if (error instanceof Offline || error instanceof TypeError) return t("file.offline");
  return t("file.failed", { reason: error instanceof Error ? error.message : String(error) });
}

function tooLarge(name: string): string {
  return t("file.too_large", { name, media: formatBytes(MEDIA_LIMIT_BYTES), documents: formatBytes(DOCUMENT_LIMIT_BYTES) });
}

// --- choosing files --------------------------------------------------------------------------

export interface Attach {
  staged: File[];
  dragging: boolean;
  stage(files: Iterable<File>): void;
  unstage(index: number): void;
  clear(): void;
  send(caption: string): void;
  /** Handlers of the area files may be dropped on. */
  dropZone: Record<"onDragEnter" | "onDragOver" | "onDragLeave" | "onDrop", (event: DragEvent) => void>;
  /** Pasted pictures (a screenshot) are staged instead of pasted as text. */
  onPaste: (event: ClipboardEvent) => void;
}

function carriesFiles(event: DragEvent): boolean {
  return event.dataTransfer?.types.includes("Files") ?? false;
}

/** Files chosen for `chat` wait in a tray until sent; `onError` shows why one was refused. */
export function useAttachments(client: Client, chat: string, onError: (text: string) => void): Attach {
  const [staged, setStaged] = useState<File[]>([]);
  const [dragging, setDragging] = useState(false);
  const depth = useRef(0);

  useEffect(() => {
    setStaged([]);
    setDragging(false);
    depth.current = 0;
  }, [chat]);

  const stage = (chosen: Iterable<File>): void => {
    const accepted: File[] = [];
    for (const file of chosen) {
      try {
        planFile(file);
        accepted.push(file);
      } catch (error) {
        onError(error instanceof FileTooLarge ? tooLarge(file.name) : describeError(error));
      }
    }
    if (accepted.length > 0) setStaged((before) => [...before, ...accepted]);
  };

  const send = (caption: string): void => {
    const files = filesOf(client);
    const sending = staged;
    setStaged([]);
    // One after the other, so they arrive in the order chosen. A failure shows on its upload
    // bubble (with Try again), so it need not be caught here.
    void (async () => {
      for (const [i, file] of sending.entries()) {
        await files.send(chat, file, i === 0 ? caption : undefined).catch(() => undefined);
      }
    })();
  };

  return {
    staged,
    dragging,
    stage,
    unstage: (index) => setStaged((before) => before.filter((_, i) => i !== index)),
    clear: () => setStaged([]),
    send,
    dropZone: {
      onDragEnter: (event) => {
        if (!carriesFiles(event)) return;
        event.preventDefault();
        depth.current += 1;
        setDragging(true);
      },
      onDragOver: (event) => {
        if (!carriesFiles(event)) return;
        event.preventDefault();
        if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
      },
      onDragLeave: (event) => {
        if (!carriesFiles(event)) return;
        depth.current = Math.max(0, depth.current - 1);
        if (depth.current === 0) setDragging(false);
      },
      onDrop: (event) => {
        if (!carriesFiles(event)) return;
        event.preventDefault();
        depth.current = 0;
        setDragging(false);
        stage(Array.from(event.dataTransfer?.files ?? []));
      },
    },
    onPaste: (event) => {
      const pasted = Array.from(event.clipboardData?.files ?? []);
      if (pasted.length === 0) return;
      event.preventDefault();
      stage(pasted);
    },
  };
}

/** The composer's paper clip: opens the file picker. */
export function AttachButton({ attach, disabled }: { attach: Attach; disabled?: boolean }) {
  const input = useRef<HTMLInputElement>(null);
  return (
    <>
      <button
        type="button"
        class="icon attach"
        aria-label={t("file.attach")}
        title={t("file.attach")}
        disabled={disabled}
        onClick={() => input.current?.click()}
      >
        📎
      </button>
      <input
        ref={input}
        type="file"
        multiple
        class="hidden-input"
        data-testid="file-input"
        tabIndex={-1}
        aria-hidden="true"
        onChange={(event) => {
          const element = event.currentTarget;
          attach.stage(Array.from(element.files ?? []));
          element.value = "";
        }}
      />
    </>
  );
}

/** A chosen picture as it will look, from a blob: URL of the local file. */
function LocalPreview({ file }: { file: Blob }) {
  const [url, setUrl] = useState<string | null>(null);
  useEffect(() => {
    const made = URL.createObjectURL(file);
    setUrl(made);
    return () => URL.revokeObjectURL(made);
  }, [file]);
  return url ? <img class="tray-preview" src={url} alt="" /> : null;
}

/** The files waiting to be sent, with a caption and Send / Cancel. */
export function StagedFiles({ attach }: { attach: Attach }) {
  const [caption, setCaption] = useState("");
  const count = attach.staged.length;
  useEffect(() => {
    if (count === 0) setCaption("");
  }, [count]);
  if (count === 0) {
    return attach.dragging ? (
      <p class="drop-hint" role="status">
        {t("file.drop")}
      </p>
    ) : null;
  }
  const submit = (event: Event): void => {
    event.preventDefault();
    attach.send(caption.trim());
    setCaption("");
  };
  return (
    <form class="file-tray" aria-label={t("file.chosen")} data-testid="file-tray" onSubmit={submit}>
      <ul class="tray-files">
        {attach.staged.map((file, i) => {
          const plan = planFile(file);
          return (
            <li key={`${file.name}-${i}`} class="tray-file" data-testid="staged-file">
              {plan.kind === "image" || plan.kind === "sticker" ? (
                <LocalPreview file={file} />
              ) : (
                <span class="file-icon" aria-hidden="true">
                  {KIND_ICONS[plan.kind]}
                </span>
              )}
              <span class="tray-name">
                <strong>{file.name || t(KIND_NAMES[plan.kind])}</strong>
                <small>{formatBytes(file.size)}</small>
              </span>
              <button type="button" class="icon" aria-label={t("file.remove", { name: file.name })} onClick={() => attach.unstage(i)}>
                ✕
              </button>
            </li>
          );
        })}
      </ul>
      <div class="tray-actions">
        <input
          type="text"
          maxLength={1024}
          value={caption}
          placeholder={t("file.caption")}
          aria-label={t("file.caption")}
          onInput={(event) => setCaption(event.currentTarget.value)}
        />
        <button type="button" onClick={() => attach.clear()}>
          {t("file.cancel")}
        </button>
        <button type="submit" class="primary">
          {count === 1 ? t("file.send") : t("file.send_many", { n: count })}
        </button>
      </div>
    </form>
  );
}

// --- files on their way out ------------------------------------------------------------------

function useUploads(client: Client, chat: string): Upload[] {
  const files = filesOf(client);
  const [uploads, setUploads] = useState(() => files.pending(chat));
  useEffect(() => {
    setUploads(files.pending(chat));
    return files.subscribe(() => setUploads(files.pending(chat).map((u) => ({ ...u }))));
  }, [files, chat]);
  return uploads;
}

function UploadBubble({ client, upload }: { client: Client; upload: Upload }) {
  const files = filesOf(client);
  const item = useRef<HTMLLIElement>(null);
  useEffect(() => item.current?.scrollIntoView({ block: "end" }), []);
  const percent = upload.total > 0 ? Math.floor((upload.done * 100) / upload.total) : 0;
  const status =
    upload.stage === "encrypting"
      ? t("file.encrypting")
      : upload.stage === "uploading"
        ? t("file.uploading", { percent })
        : upload.stage === "sending"
          ? t("file.sending")
          : upload.stage === "waiting"
            ? t("file.waiting")
            : t("file.not_sent", { reason: describeSendError(upload.error) });
  return (
    <li ref={item} class="bubble out upload" data-testid="upload" data-stage={upload.stage} aria-busy={upload.stage !== "failed" && upload.stage !== "waiting"}>
      <div class="file-card">
        {upload.kind === "image" || upload.kind === "sticker" ? (
          <LocalPreview file={upload.file} />
        ) : (
          <span class="file-icon" aria-hidden="true">
            {KIND_ICONS[upload.kind]}
          </span>
        )}
        <span class="file-text">
          <strong class="file-name">{upload.name || t(KIND_NAMES[upload.kind])}</strong>
          <small>{formatBytes(upload.size)}</small>
        </span>
      </div>
      {upload.stage === "uploading" && <progress max={upload.total} value={upload.done} aria-label={status} />}
      <small class={upload.stage === "failed" ? "error" : "muted"} role={upload.stage === "failed" ? "alert" : "status"}>
        {status}
      </small>
      {upload.stage === "waiting" && (
        <span class="meta">
          <Ticks status="pending" />
        </span>
      )}
      {(upload.stage === "failed" || upload.stage === "waiting") && (
        <div class="file-actions">
          {upload.stage === "failed" && (
            <button type="button" class="small" onClick={() => void files.retry(upload.id).catch(() => undefined)}>
              {t("file.retry")}
            </button>
          )}
          <button type="button" class="small" onClick={() => files.dismiss(upload.id)}>
            {t("file.dismiss")}
          </button>
        </div>
      )}
    </li>
  );
}

/** The chat's uploads, as outgoing bubbles after its messages. */
export function UploadBubbles({ client, chat }: { client: Client; chat: string }) {
  const uploads = useUploads(client, chat);
  return (
    <>
      {uploads.map((upload) => (
        <UploadBubble key={upload.id} client={client} upload={upload} />
      ))}
    </>
  );
}

// --- received (and sent) files ---------------------------------------------------------------

/** The file a message carries: its own, or the file header of a template or reply buttons. */
export function fileOf(client: Client, message: Message): Media | undefined {
  const payload = client.payloadOf(message);
  return payload ? attachedFile(payload) : undefined;
}

interface Opening {
  opened?: OpenedFile;
  error?: unknown;
  busy: boolean;
}

/** The decrypted file of `message`: opened at once when `auto`, else when `open` is called. */
function useOpened(client: Client, message: Message, media: Media, auto: boolean): [Opening, () => Promise<OpenedFile | null>] {
  const files = filesOf(client);
  const [state, setState] = useState<Opening>(() => {
    const opened = files.peek(media);
    return opened ? { opened, busy: false } : { busy: false };
  });
  const live = useRef(true);
  useEffect(() => {
    live.current = true;
    return () => {
      live.current = false;
    };
  }, []);
  const open = async (): Promise<OpenedFile | null> => {
    setState({ busy: true });
    try {
      const opened = await files.openMedia(media);
      if (live.current) setState({ opened, busy: false });
      return opened;
    } catch (error) {
      if (live.current) setState({ error, busy: false });
      return null;
    }
  };
  useEffect(() => {
    if (auto && !state.opened && !state.busy && state.error === undefined) void open();
    // Opened once per message shown; a retry is the user's.
  }, [message.id]);
  return [state, open];
}

function Failed({ error, onRetry }: { error: unknown; onRetry: () => void }) {
  const retryable = error instanceof Offline || error instanceof TypeError;
  return (
    <div class="file-failed" role="alert" data-testid="file-failed">
      <p class="notice">{describeOpenError(error)}</p>
      {retryable && (
        <button type="button" class="small" onClick={onRetry}>
          {t("file.retry")}
        </button>
      )}
    </div>
  );
}

function Picture({ client, message, media }: { client: Client; message: Message; media: Media }) {
  const [state, open] = useOpened(client, message, media, true);
  const thumbnail = thumbnailUrl(media);
  const sticker = media.kind === "sticker";
  const label = media.caption ?? media.filename ?? t(KIND_NAMES[media.kind]);
  if (state.error !== undefined) return <Failed error={state.error} onRetry={() => void open()} />;
  const source = state.opened?.url ?? thumbnail;
  return (
    <div class={sticker ? "file-sticker" : "file-picture"} data-testid={sticker ? "file-sticker" : "file-image"} data-loaded={state.opened ? "1" : "0"}>
      {source ? (
        <img
          src={source}
          alt={label}
          class={state.opened ? "" : "preview"}
          {...(media.width && media.height ? { width: media.width, height: media.height } : {})}
        />
      ) : (
        <span class="file-placeholder">{t("file.opening")}</span>
      )}
    </div>
  );
}

function Video({ client, message, media }: { client: Client; message: Message; media: Media }) {
  const [state, open] = useOpened(client, message, media, false);
  const thumbnail = thumbnailUrl(media);
  if (state.error !== undefined) return <Failed error={state.error} onRetry={() => void open()} />;
  if (state.opened) {
    return (
      <video class="file-video" data-testid="file-video" controls preload="metadata" src={state.opened.url} {...(thumbnail ? { poster: thumbnail } : {})} />
    );
  }
  return (
    <button type="button" class="file-poster" data-testid="file-video" disabled={state.busy} onClick={() => void open()} aria-label={t("file.play")}>
      {thumbnail && <img src={thumbnail} alt="" />}
      <span class="play" aria-hidden="true">
        {state.busy ? "…" : "▶"}
      </span>
    </button>
  );
}

function Sound({ client, message, media }: { client: Client; message: Message; media: Media }) {
  const [state, open] = useOpened(client, message, media, true);
  if (state.error !== undefined) return <Failed error={state.error} onRetry={() => void open()} />;
  return (
    <div class="file-audio" data-testid="file-audio">
      {media.voice && <small class="muted">🎤 {t("file.voice")}</small>}
      {state.opened ? <audio controls preload="metadata" src={state.opened.url} /> : <span class="file-placeholder">{t("file.opening")}</span>}
    </div>
  );
}

function typeLabel(media: Media): string {
  const name = media.filename ?? "";
  const dot = name.lastIndexOf(".");
  if (dot > 0 && name.length - dot <= 6) return name.slice(dot + 1).toUpperCase();
  const [, subtype = ""] = media.mime_type.split("/");
  return subtype.length <= 6 ? subtype.toUpperCase() : t("file.document");
}

/** Save `opened` under its name: a click on an `<a download>` of its blob: URL. */
function save(anchor: HTMLAnchorElement | null, opened: OpenedFile): void {
  if (!anchor) return;
  anchor.href = opened.url;
  anchor.download = opened.name;
  anchor.click();
}

function DocumentCard({ client, message, media }: { client: Client; message: Message; media: Media }) {
  const [state, open] = useOpened(client, message, media, false);
  const anchor = useRef<HTMLAnchorElement>(null);
  const name = media.filename ?? t("file.document");
  const download = async (): Promise<void> => {
    const opened = state.opened ?? (await open());
    if (opened) save(anchor.current, opened);
  };
  return (
    <div class="file-document" data-testid="file-card">
      <div class="file-card">
        <span class="file-icon" aria-hidden="true">
          📄
        </span>
        <span class="file-text">
          <strong class="file-name">{name}</strong>
          <small>
            {typeLabel(media)} · {formatBytes(media.plain_size)}
          </small>
        </span>
        <span class="file-actions">
          {!state.opened && (
            <button type="button" class="small" disabled={state.busy} onClick={() => void download()}>
              {state.busy ? t("file.opening") : t("file.download")}
            </button>
          )}
          {/* The Download click saves through this link; once decrypted it saves again. */}
          <a
            ref={anchor}
            class={state.opened ? "button small" : "hidden-input"}
            {...(state.opened ? { href: state.opened.url, download: state.opened.name } : { "aria-hidden": "true", tabIndex: -1 })}
          >
            {t("file.save")}
          </a>
        </span>
      </div>
      {state.error !== undefined && <Failed error={state.error} onRetry={() => void download()} />}
    </div>
  );
}

/** A file in a bubble, as its kind is shown; `caption` under it. */
export function FileView({ client, message, media }: { client: Client; message: Message; media: Media }) {
  let shown: JSX.Element;
  switch (media.kind) {
    case "image":
    case "sticker":
      shown = <Picture client={client} message={message} media={media} />;
      break;
    case "video":
      shown = <Video client={client} message={message} media={media} />;
      break;
    case "audio":
      shown = <Sound client={client} message={message} media={media} />;
      break;
    default:
      shown = <DocumentCard client={client} message={message} media={media} />;
  }
  return (
    <div class={`file file-${media.kind}`} data-kind={media.kind}>
      {shown}
      {media.caption && <p class="body caption">{media.caption}</p>}
    </div>
  );
}
