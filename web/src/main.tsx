import { render } from "preact";
import wasmUrl from "@towns-protocol/olm/olm.wasm?url";
import { initOlm } from "./crypto/olm";

function App() {
  return <main>Tresen</main>;
}

void initOlm(wasmUrl);
render(<App />, document.getElementById("root")!);
