// What a picture, video or sound shows before it is downloaded, found with the browser's own
// decoders: its dimensions (as shown, after EXIF rotation), a small JPEG thumbnail that
// travels inside the end-to-end message, and the duration of a video or sound. As the Python
// SDK's client/thumbnails.py: a file the browser cannot decode goes without them.

import { MAX_THUMBNAIL_BYTES, type MediaKind } from "../wire/payloads";

/** What `describeInBrowser` found; each field is optional. */
export interface FileFacts {
  width?: number;
  height?: number;
  thumbnail?: Uint8Array;
  duration_ms?: number;
}

export type Describe = (file: Blob, kind: MediaKind, mimeType: string) => Promise<FileFacts>;

/** The longer edge of a thumbnail, in pixels (smaller when the JPEG would not fit). */
export const THUMBNAIL_EDGE = 160;
const QUALITIES = [0.7, 0.5, 0.3];
/** A video or sound whose metadata does not load within this time is sent without it. */
const METADATA_WITHIN_MS = 5_000;

export const describeInBrowser: Describe = async (file, kind) => {
  if (kind === "image" || kind === "sticker") return describeImage(file);
  if (kind === "video") return describePlayable(file, "video");
  if (kind === "audio") return describePlayable(file, "audio");
  return {};
};

async function describeImage(file: Blob): Promise<FileFacts> {
  if (typeof createImageBitmap !== "function") return {};
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  try {
    const facts: FileFacts = { width: bitmap.width, height: bitmap.height };
    const thumbnail = await jpegThumbnail(bitmap, bitmap.width, bitmap.height);
    if (thumbnail) facts.thumbnail = thumbnail;
    return facts;
  } finally {
    bitmap.close();
  }
}

/** A JPEG of `source` with its longer edge at most THUMBNAIL_EDGE pixels, halved and at lower
 * quality until it fits MAX_THUMBNAIL_BYTES; null when nothing fits. */
export async function jpegThumbnail(source: CanvasImageSource, width: number, height: number): Promise<Uint8Array | null> {
  if (width < 1 || height < 1) return null;
  for (let edge = THUMBNAIL_EDGE; edge >= 16; edge = Math.floor(edge / 2)) {
    const scale = Math.min(1, edge / Math.max(width, height));
    const w = Math.max(1, Math.round(width * scale));
    const h = Math.max(1, Math.round(height * scale));
    const canvas = drawn(source, w, h);
    if (!canvas) return null;
    for (const quality of QUALITIES) {
      const jpeg = await encodeJpeg(canvas, quality);
      if (jpeg && jpeg.length <= MAX_THUMBNAIL_BYTES) return jpeg;
    }
  }
  return null;
}

type Canvas = OffscreenCanvas | HTMLCanvasElement;

function drawn(source: CanvasImageSource, w: number, h: number): Canvas | null {
  const canvas: Canvas = typeof OffscreenCanvas === "function" ? new OffscreenCanvas(w, h) : Object.assign(document.createElement("canvas"), { width: w, height: h });
  const context = canvas.getContext("2d") as OffscreenCanvasRenderingContext2D | CanvasRenderingContext2D | null;
  if (!context) return null;
  // A JPEG has no transparency: a transparent PNG shows on white, not on black.
  context.fillStyle = "#fff";
  context.fillRect(0, 0, w, h);
  context.drawImage(source, 0, 0, w, h);
  return canvas;
}

async function encodeJpeg(canvas: Canvas, quality: number): Promise<Uint8Array | null> {
  const blob =
    canvas instanceof HTMLCanvasElement
      ? await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, "image/jpeg", quality))
      : await canvas.convertToBlob({ type: "image/jpeg", quality });
  return blob ? new Uint8Array(await blob.arrayBuffer()) : null;
}

/** Dimensions, first frame and duration of a video; the duration of a sound. */
async function describePlayable(file: Blob, tag: "video" | "audio"): Promise<FileFacts> {
  if (typeof document === "undefined") return {};
  const element = document.createElement(tag);
  const url = URL.createObjectURL(file);
  try {
    element.muted = true;
    element.preload = tag === "video" ? "auto" : "metadata";
    await loaded(element, url, tag === "video" ? "loadeddata" : "loadedmetadata");
    const facts: FileFacts = {};
    if (Number.isFinite(element.duration) && element.duration >= 0) facts.duration_ms = Math.round(element.duration * 1000);
    if (element instanceof HTMLVideoElement && element.videoWidth > 0 && element.videoHeight > 0) {
      facts.width = element.videoWidth;
      facts.height = element.videoHeight;
      const thumbnail = await jpegThumbnail(element, element.videoWidth, element.videoHeight).catch(() => null);
      if (thumbnail) facts.thumbnail = thumbnail;
    }
    return facts;
  } finally {
    element.removeAttribute("src");
    element.load();
    URL.revokeObjectURL(url);
  }
}

function loaded(element: HTMLMediaElement, url: string, event: "loadeddata" | "loadedmetadata"): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the file's metadata did not load")), METADATA_WITHIN_MS);
    element.addEventListener(event, () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
    element.addEventListener("error", () => {
      clearTimeout(timer);
      reject(new Error("the browser cannot decode this file"));
    }, { once: true });
    element.src = url;
  });
}
