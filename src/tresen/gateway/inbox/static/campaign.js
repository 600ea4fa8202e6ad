// A campaign that sends: its progress refreshed every few seconds without a reload, until it
// is done or cancelled (the page without this script shows the same on each reload).
(() => {
  "use strict";
  const PERIOD_MS = 2000;
  const refresh = async () => {
    const shown = document.getElementById("progress");
    const from = shown && shown.dataset.refresh;
    if (!shown || !from) return;
    try {
      const answer = await fetch(from, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!answer.ok) return;
      const doc = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = doc.getElementById("progress");
      if (!fresh) return;
      shown.replaceWith(document.importNode(fresh, true));
      if (!fresh.dataset.refresh) return;
    } catch (_err) {
      // Offline for a moment: the next turn tries again.
    }
    window.setTimeout(refresh, PERIOD_MS);
  };
  window.setTimeout(refresh, PERIOD_MS);
})();
