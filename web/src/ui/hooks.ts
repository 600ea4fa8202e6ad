import { useEffect, useReducer, useState } from "preact/hooks";
import type { Client } from "../core/client";
import { Offline, RelayError } from "../core/api";
import { t } from "./i18n";

/** Re-render whenever the client's state changes. */
export function useClient(client: Client): void {
  const [, bump] = useReducer((n: number) => n + 1, 0);
  useEffect(() => client.subscribe(() => bump(undefined)), [client]);
}

/** The current hash route, e.g. ["chat", "<account id>"]. */
export function useRoute(): string[] {
  const read = (): string[] =>
    location.hash.replace(/^#\/?/, "").split("?")[0]!.split("/").filter(Boolean).map(decodeURIComponent);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const update = (): void => setRoute(read());
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return route;
}

export function go(...parts: string[]): void {
  location.hash = `#/${parts.map(encodeURIComponent).join("/")}`;
}

export function describeError(error: unknown): string {
  if (error instanceof Offline) return t("error.offline");
  if (error instanceof RelayError) return t("error.code", { code: error.code, message: error.message });
  return t("error.generic", { message: error instanceof Error ? error.message : String(error) });
}

/** The current time, ticking every `everyMs` (for "typing…" and open-now labels). */
export function useNow(everyMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
  return now;
}

/** A parameter of the route's query (`#/chat/<account>?text=START%20NEWS`): a deep link or a
 * QR code can open a chat with a text ready to send. */
export function routeParameter(name: string): string | null {
  const query = location.hash.split("?")[1];
  return query ? new URLSearchParams(query).get(name) : null;
}
