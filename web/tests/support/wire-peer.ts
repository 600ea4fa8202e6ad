// The Python reference as a test peer: tests/interop/wire_peer.py, run with the project's
// virtual environment, one JSON command per line.

import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface, type Interface } from "node:readline";
import { resolve } from "node:path";

const root = resolve(import.meta.dirname, "../../..");
const python = process.env.TRESEN_PYTHON ?? resolve(root, ".venv/bin/python");

export class WirePeer {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: Interface;
  private readonly waiting: ((line: string) => void)[] = [];

  constructor() {
    if (!existsSync(python)) {
      throw new Error(`the interop tests need the project's Python (${python}): run make venv`);
    }
    this.child = spawn(python, [resolve(root, "tests/interop/wire_peer.py")], {
      env: { ...process.env, PYTHONPATH: resolve(root, "src") },
    });
    this.lines = createInterface({ input: this.child.stdout });
    this.lines.on("line", (line: string) => this.waiting.shift()?.(line));
  }

  /** The peer's answer to `command`; a Python exception fails the call. */
  async call<T = Record<string, any>>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const answer = new Promise<string>((done) => this.waiting.push(done));
    this.child.stdin.write(`${JSON.stringify({ op, ...args })}\n`);
    const parsed = JSON.parse(await answer) as T & { error?: string };
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed) && parsed.error) {
      throw new Error(`Python: ${parsed.error}`);
    }
    return parsed;
  }

  close(): void {
    this.child.stdin.end();
    this.lines.close();
  }
}
