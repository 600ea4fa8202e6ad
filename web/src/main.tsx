import { render } from "preact";
import wasmUrl from "@towns-protocol/olm/olm.wasm?url";
import { initOlm } from "./crypto/olm";
import { Businesses } from "./core/businesses";
import { Client } from "./core/client";
import { filesOf } from "./core/files";
import { App, type Services } from "./ui/app";
import { language, setLanguage, t } from "./ui/i18n";
import { wire } from "./wiring";
import "./ui/app.css";

// One tab at a time is this browser's device: two tabs moving the same Olm sessions would
// break them, and two connections of one device push each other off the relay. A Web Lock
// decides which tab it is; another tab offers to take over.
const DEVICE_LOCK = "tresen-device";

const root = document.getElementById("root")!;
let running: Client | null = null;

async function run(): Promise<void> {
  const client = new Client();
  await client.open();
  running = client;
  const services: Services = wire(client, Businesses);
  // Files that waited for the network when the tab was closed go out as soon as it is back.
  if (client.registered) filesOf(client);
  client.onIncoming = (peer, message) => {
    // While the user looks at the app, the chat list and the open chat show it already.
    if (document.visibilityState === "visible" && document.hasFocus()) return;
    if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
    const name = peer.name ?? peer.phone ?? t("app.name");
    const note = new Notification(name, { body: peer.preview ?? "", tag: message.chat, icon: "/app/icon.svg" });
    note.onclick = () => {
      window.focus();
      location.hash = `#/chat/${encodeURIComponent(message.chat)}`;
    };
  };
  root.textContent = "";
  render(<App services={services} />, root);
}

function Elsewhere({ stolen }: { stolen: boolean }) {
  return (
    <main class="register">
      <div class="register-card" data-testid="elsewhere">
        <h1>{t(stolen ? "app.taken_over" : "app.elsewhere")}</h1>
        <p class="lead">{t("app.elsewhere_note")}</p>
        <button type="button" class="primary" onClick={() => void claim(true)}>
          {t("app.use_here")}
        </button>
      </div>
    </main>
  );
}

function stop(): void {
  running?.close();
  running = null;
}

/** Become the device tab (`steal`: take over from the tab that is); false if another tab is. */
function claim(steal: boolean): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const options: LockOptions = steal ? { steal: true } : { ifAvailable: true };
    navigator.locks
      .request(DEVICE_LOCK, options, async (lock) => {
        if (!lock) {
          resolve(false);
          return;
        }
        resolve(true);
        render(null, root);
        await run();
        await new Promise<never>(() => undefined); // held while this tab lives
      })
      .catch(() => {
        // Another tab took over: this one lets go of the store and the connection.
        stop();
        render(<Elsewhere stolen />, root);
      });
  });
}

async function start(): Promise<void> {
  setLanguage(language());
  root.textContent = t("app.loading");
  await initOlm(wasmUrl);
  if (!("locks" in navigator)) {
    await run();
  } else if (!(await claim(false))) {
    root.textContent = "";
    render(<Elsewhere stolen={false} />, root);
  }
  if ("serviceWorker" in navigator) void navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" }).catch(() => undefined);
}

void start();
