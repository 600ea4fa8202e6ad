"""The web app as a customer's browser meets it: it loads from the relay under its strict
CSP without a single error, and its page may talk to the relay, HTTP and WebSocket, but to no
other origin."""

from __future__ import annotations

from webapp_support import AppPage, MakeCustomer, Platform, rendered, shoot_app

from tresen.client.events import MessageEvent
from tresen.wire.e2e import Text

CONNECT_WITH_TOKEN = """async ([url, token]) => {
  const socket = new WebSocket(url, ["tresen.v1", "tresen.bearer." + token]);
  socket.binaryType = "arraybuffer";
  return await new Promise((resolve, reject) => {
    socket.onmessage = (event) => {
      resolve({protocol: socket.protocol, bytes: event.data.byteLength});
      socket.close();
    };
    socket.onerror = () => reject(new Error("the WebSocket failed"));
    socket.onclose = (event) => reject(new Error("the relay closed the WebSocket: " + event.code));
    setTimeout(() => reject(new Error("no frame from the relay within 30 s")), 30000);
  });
}"""

FETCH = """async (url) => {
  try {
    const response = await fetch(url, {signal: AbortSignal.timeout(30000)});
    return response.status;
  } catch (error) {
    return String(error);
  }
}"""

OPEN_SOCKET = """async (url) => {
  try {
    const socket = new WebSocket(url);
    return await new Promise((resolve) => {
      socket.onopen = () => { socket.close(); resolve("open"); };
      socket.onerror = () => resolve("failed");
      socket.onclose = () => resolve("closed");
      setTimeout(() => resolve("no answer within 30 s"), 30000);
    });
  } catch (error) {
    return String(error);
  }
}"""

INLINE_SCRIPT = """() => {
  const script = document.createElement("script");
  script.textContent = "window.injected = true;";
  document.body.append(script);
  return window.injected === true;
}"""


async def test_the_app_loads_under_its_policy_without_errors(app: AppPage) -> None:
    page = app.page
    await rendered(page)
    assert await page.title() == "Tresen"
    # Olm's WebAssembly came as application/wasm (compiled while streaming, which the policy
    # allows with 'wasm-unsafe-eval' and nothing more).
    wasm = [r for r in app.responses if r.url.endswith(".wasm")]
    assert [(r.status, r.headers["content-type"]) for r in wasm] == [(200, "application/wasm")]
    document = next(r for r in app.responses if r.url.endswith("/app/"))
    assert "wasm-unsafe-eval" in document.headers["content-security-policy"]
    await page.wait_for_load_state("networkidle")
    assert app.problems.all() == []
    await shoot_app(page, "start")


async def test_a_deep_link_opens_the_app(app: AppPage, platform: Platform) -> None:
    await app.page.goto("/app/chats/4930555010000")
    await rendered(app.page)
    assert app.page.url == f"{platform.url}/app/chats/4930555010000"
    assert app.problems.all() == []


async def test_the_page_reaches_the_relay_and_nothing_else(
    app: AppPage, platform: Platform, make_customer: MakeCustomer
) -> None:
    page = app.page
    await rendered(page)
    customer = await make_customer("anna")
    token = customer.api.token

    # The relay's WebSocket, with the device token as the subprotocol a browser can send:
    # connect-src 'self' covers ws: on the relay's own host and port.
    hello = await page.evaluate(CONNECT_WITH_TOKEN, [platform.ws_url, token])
    assert hello["protocol"] == "tresen.v1"
    assert hello["bytes"] > 0
    assert await page.evaluate(FETCH, "/v1/health") == 200
    assert app.problems.all() == []

    # Another origin (the demo gateway, on another port of the same machine) is refused,
    # and so is script the page did not load from the relay: each one a violation.
    gateway = platform.gateway_url
    assert "Failed to fetch" in await page.evaluate(FETCH, f"{gateway}/docs")
    assert await page.evaluate(OPEN_SOCKET, gateway.replace("http", "ws", 1) + "/") != "open"
    assert await page.evaluate(INLINE_SCRIPT) is False
    await app.wait_for_violations(3)
    directives = sorted(v["directive"] for v in app.problems.csp_violations)
    assert directives == ["connect-src", "connect-src", "script-src-elem"]
    assert app.problems.console_errors  # Chromium says why it refused


async def test_the_platform_runs_the_verified_airline_for_sdk_customers(
    platform: Platform, make_customer: MakeCustomer
) -> None:
    customer = await make_customer("ben")
    assert customer.operator_fingerprint == platform.fingerprint
    [airline] = await customer.find_businesses("air")
    assert (airline.display_name, airline.verified) == ("Tresen Air", True)
    await customer.send_text(platform.business_phone, "Is my flight on time?")
    while True:
        event = await customer.next_event(within_s=20)
        if isinstance(event, MessageEvent) and not event.outgoing:
            assert isinstance(event.payload, Text)
            if "Which flight is it?" in event.payload.text:
                break
