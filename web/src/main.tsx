import { render } from "preact";
import wasmUrl from "@towns-protocol/olm/olm.wasm?url";
import { initOlm } from "./crypto/olm";
import { Businesses } from "./core/businesses";
import { Client } from "./core/client";
import { App, type Services } from "./ui/app";
import { language, setLanguage, t } from "./ui/i18n";
import { wire } from "./wiring";
import "./ui/app.css";

async function start(): Promise<void> {
  setLanguage(language());
  const root = document.getElementById("root")!;
  root.textContent = t("app.loading");
  await initOlm(wasmUrl);
  const client = new Client();
  await client.open();
  const services: Services = wire(client, Businesses);
  client.onIncoming = (peer, message) => {
    if (document.visibilityState === "visible" || typeof Notification === "undefined") return;
    if (Notification.permission !== "granted") return;
    const name = peer.name ?? peer.phone ?? t("app.name");
    const note = new Notification(name, { body: peer.preview ?? "", tag: message.chat, icon: "/app/icon.svg" });
    note.onclick = () => {
      window.focus();
      location.hash = `#/chat/${encodeURIComponent(message.chat)}`;
    };
  };
  root.textContent = "";
  render(<App services={services} />, root);
  if ("serviceWorker" in navigator) void navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" }).catch(() => undefined);
}

void start();
