// The live connection to the relay: the WebSocket /v1/ws with one msgpack map per binary
// frame (docs/protocol.md §5). It reconnects by itself with a growing pause, at once when the
// browser says it is online again, and hands every server frame to the client.

import { decode, encode } from "@msgpack/msgpack";
import { RelayError } from "./api";

export type ServerFrame = { t: string; v?: number; [field: string]: unknown };

export class NotConnected extends Error {
  override name = "NotConnected";
}

interface Waiting {
  resolve(frame: ServerFrame): void;
  reject(error: Error): void;
}

export interface ConnectionEvents {
  onFrame(frame: ServerFrame): void;
  onOpen(): void;
  onClose(code: number, reason: string): void;
}

const FIRST_PAUSE_MS = 500;
const LONGEST_PAUSE_MS = 30_000;
const ANSWER_TIMEOUT_MS = 30_000;

export class Connection {
  private socket: WebSocket | null = null;
  private open = false;
  private stopped = true;
  private pause = FIRST_PAUSE_MS;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly waiting = new Map<string, Waiting>();
  private nonce = 0;

  constructor(
    private readonly url: string,
    private readonly token: () => string | null,
    private readonly events: ConnectionEvents,
  ) {}

  get connected(): boolean {
    return this.open;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    if (typeof window !== "undefined") {
      window.addEventListener("online", this.wake);
      window.addEventListener("offline", this.lost);
    }
    this.dial();
  }

  stop(): void {
    this.stopped = true;
    if (typeof window !== "undefined") {
      window.removeEventListener("online", this.wake);
      window.removeEventListener("offline", this.lost);
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.socket?.close(1000, "bye");
    this.socket = null;
  }

  /** The browser lost its network: the socket is as good as dead, and waiting for its pings
   * to time out would leave sends hanging. Dial again when the browser is online. */
  private readonly lost = (): void => {
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    this.open = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    socket.onclose = null;
    socket.close(1000, "offline");
    for (const [, waiting] of this.waiting) waiting.reject(new NotConnected("the browser is offline"));
    this.waiting.clear();
    this.events.onClose(1006, "offline");
  };

  private readonly wake = (): void => {
    if (this.open || this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.pause = FIRST_PAUSE_MS;
    this.dial();
  };

  private dial(): void {
    this.timer = null;
    const token = this.token();
    if (!token || this.stopped) return;
    if (typeof navigator !== "undefined" && navigator.onLine === false) return; // `online` dials
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.url, ["tresen.v1", `tresen.bearer.${token}`]);
    } catch {
      this.retry();
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      this.open = true;
      this.pause = FIRST_PAUSE_MS;
      this.events.onOpen();
    };
    socket.onmessage = (event: MessageEvent) => {
      if (!(event.data instanceof ArrayBuffer)) return;
      let frame: ServerFrame;
      try {
        frame = decode(new Uint8Array(event.data)) as ServerFrame;
      } catch {
        return;
      }
      this.answer(frame);
      this.events.onFrame(frame);
    };
    socket.onclose = (event: CloseEvent) => {
      if (this.socket !== socket) return;
      this.open = false;
      this.socket = null;
      for (const [, waiting] of this.waiting) waiting.reject(new NotConnected("the connection closed"));
      this.waiting.clear();
      this.events.onClose(event.code, event.reason);
      // Unauthorized or removed: no point dialling again with the same token.
      if (event.code === 4401 || event.code === 1008) return;
      this.retry();
    };
  }

  private retry(): void {
    if (this.stopped) return;
    const jitter = Math.random() * 0.3 * this.pause;
    this.timer = setTimeout(() => this.dial(), this.pause + jitter);
    this.pause = Math.min(LONGEST_PAUSE_MS, this.pause * 2);
  }

  private answer(frame: ServerFrame): void {
    let key: string | null = null;
    if (frame.t === "accepted" || frame.t === "resent") key = `c:${String(frame["client_msg_id"])}`;
    else if (frame.t === "error" && typeof frame["client_msg_id"] === "string") {
      key = `c:${frame["client_msg_id"]}`;
    } else if (frame.t === "pong") key = `p:${String(frame["nonce"])}`;
    if (key === null) return;
    const waiting = this.waiting.get(key);
    if (!waiting) return;
    this.waiting.delete(key);
    if (frame.t === "error") {
      waiting.reject(
        new RelayError(
          Number(frame["code"]),
          String(frame["message"] ?? "refused"),
          (frame["details"] as Record<string, unknown>) ?? {},
        ),
      );
    } else waiting.resolve(frame);
  }

  /** Send a frame that gets no answer when it succeeds (ack, receipt). */
  post(frame: Record<string, unknown>): boolean {
    if (!this.open || !this.socket) return false;
    this.socket.send(encode({ v: 1, ...frame }, { ignoreUndefined: true }));
    return true;
  }

  /** Send a `send` or `resend` frame and wait for its answer (`accepted`, `resent`); an
   * `error` answer throws `RelayError`. */
  request(frame: Record<string, unknown> & { client_msg_id: string }): Promise<ServerFrame> {
    return this.await(`c:${frame.client_msg_id}`, frame);
  }

  ping(): Promise<ServerFrame> {
    this.nonce += 1;
    return this.await(`p:${this.nonce}`, { t: "ping", nonce: this.nonce });
  }

  private await(key: string, frame: Record<string, unknown>): Promise<ServerFrame> {
    if (!this.open || !this.socket) return Promise.reject(new NotConnected("not connected"));
    return new Promise<ServerFrame>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.waiting.delete(key)) reject(new NotConnected("no answer from the relay"));
      }, ANSWER_TIMEOUT_MS);
      this.waiting.set(key, {
        resolve: (answer) => {
          clearTimeout(timer);
          resolve(answer);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.post(frame);
    });
  }
}
