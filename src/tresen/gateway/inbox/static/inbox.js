// The inbox's pages, live: they follow /inbox/events and fetch the fragments that changed
// (rendered by the server, in the agent's language). Every page works without this script;
// it only saves reloading, and adds keyboard shortcuts. Our own code, no library.
"use strict";

(function () {
  var LIST_DELAY_MS = 300; // a busy inbox: the rows at most ~3 times a second, still within 1 s
  var THREAD_DELAY_MS = 100;
  var UNREAD_DELAY_MS = 400;
  var TYPING_EVERY_MS = 4000;
  var PRESENCE_SHOWN_MS = 6000;
  var RECONNECT_FIRST_MS = 1000;
  var RECONNECT_MOST_MS = 30000;

  var list = document.getElementById("conversations");
  var thread = document.getElementById("thread");
  var presence = document.getElementById("presence");
  var status = document.getElementById("live-status");
  var reply = document.getElementById("reply");
  var help = document.getElementById("shortcuts");
  var contact = thread ? thread.dataset.contact : null;
  var me = presence ? presence.dataset.me : null;
  var baseTitle = document.title.replace(/^\(\d+\) /, "");

  function say(text) {
    if (status) status.textContent = text;
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (whole, name) {
      return name in values ? String(values[name]) : whole;
    });
  }

  // Runs ``work`` (which returns a promise) at most once per ``delay`` ms, however often it
  // is asked for; asked again while it runs, it runs once more after.
  function coalesced(work, delay) {
    var timer = null;
    var running = false;
    var again = false;
    function run() {
      timer = null;
      running = true;
      again = false;
      Promise.resolve()
        .then(work)
        .catch(function () {})
        .then(function () {
          running = false;
          if (again) ask();
        });
    }
    function ask() {
      if (running) {
        again = true;
      } else if (timer === null) {
        timer = setTimeout(run, delay);
      }
    }
    return ask;
  }

  function get(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } }).then(
      function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response;
      }
    );
  }

  function fragment(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    return template.content;
  }

  // --- the unread count in the tab's title -----------------------------------------------

  var lastUnread = null;
  var refreshUnread = coalesced(function () {
    return get("/inbox/unread")
      .then(function (r) { return r.json(); })
      .then(function (body) {
        var n = Number(body.conversations) || 0;
        document.title = (n > 0 ? "(" + n + ") " : "") + baseTitle;
        if (lastUnread !== null && n > lastUnread && status) {
          say(fill(status.dataset.unread || "", { n: n }));
        }
        lastUnread = n;
      });
  }, UNREAD_DELAY_MS);

  // --- the conversation list ---------------------------------------------------------------

  function rows() {
    return list ? Array.prototype.slice.call(list.querySelectorAll("li[data-contact] > a")) : [];
  }

  var refreshList = coalesced(function () {
    return get("/inbox/list-items?" + (list.dataset.filters || ""))
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var focused = document.activeElement;
        var row = focused && list.contains(focused) ? focused.closest("li[data-contact]") : null;
        var keep = row ? row.dataset.contact : null;
        list.innerHTML = html;
        if (keep) {
          var again = list.querySelector('li[data-contact="' + CSS.escape(keep) + '"] > a');
          if (again) again.focus();
        }
      });
  }, LIST_DELAY_MS);

  // --- the thread --------------------------------------------------------------------------

  function place(item) {
    var wamid = item.dataset ? item.dataset.wamid : undefined;
    var old = wamid ? thread.querySelector('li[data-wamid="' + CSS.escape(wamid) + '"]') : null;
    if (old) {
      old.replaceWith(item);
    } else {
      thread.appendChild(item);
    }
  }

  var refreshThread = coalesced(function () {
    var after = thread.dataset.after || "0";
    var url = "/inbox/c/" + encodeURIComponent(contact) + "/items?after=" + encodeURIComponent(after);
    return get(url).then(function (response) {
      var until = response.headers.get("X-Inbox-Until");
      return response.text().then(function (html) {
        var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
        var items = fragment(html).querySelectorAll("li");
        Array.prototype.forEach.call(items, place);
        if (until) thread.dataset.after = until;
        if (items.length && atBottom) window.scrollTo(0, document.body.scrollHeight);
      });
    });
  }, THREAD_DELAY_MS);

  // A status, a reaction or a customer's choice of a button changes a message already shown
  // (none of them is an item of its own): the messages that changed are rendered again.
  var refreshTicks = coalesced(function () {
    var url = "/inbox/c/" + encodeURIComponent(contact) + "/items?after=0";
    return get(url)
      .then(function (r) { return r.text(); })
      .then(function (html) {
        Array.prototype.forEach.call(fragment(html).querySelectorAll("li[data-wamid]"), function (item) {
          var old = thread.querySelector('li[data-wamid="' + CSS.escape(item.dataset.wamid) + '"]');
          if (old && old.innerHTML !== item.innerHTML) old.replaceWith(item);
        });
      });
  }, THREAD_DELAY_MS);

  // An assignment or a status change: the thread's heading line and actions are shown again
  // where they changed, unless the agent is using them (a block the same as before is left
  // alone, so a choice made in it but not yet sent is kept).
  var refreshHeading = coalesced(function () {
    return get("/inbox/c/" + encodeURIComponent(contact))
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        ["main > h1 + p.meta", "main > div.actions", "main > ul.labels"].forEach(function (selector) {
          var now = document.querySelector(selector);
          var then = page.querySelector(selector);
          if (!now || !then || now.contains(document.activeElement)) return;
          var shown = document.importNode(then, true);
          if (shown.outerHTML !== now.outerHTML) now.replaceWith(shown);
        });
      });
  }, THREAD_DELAY_MS);

  var presenceTimer = null;
  function showTyping(name) {
    if (!presence) return;
    presence.textContent = fill(presence.dataset.replying || "", { name: name });
    clearTimeout(presenceTimer);
    presenceTimer = setTimeout(function () {
      presence.textContent = "";
    }, PRESENCE_SHOWN_MS);
  }

  // --- the reply box: Enter sends, Shift+Enter makes a new line; typing is told ------------

  if (reply) {
    var text = reply.querySelector("#text");
    var csrf = reply.querySelector('input[name="csrf"]');
    var toldAt = 0;
    if (text) {
      text.addEventListener("keydown", function (event) {
        if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
        if (event.ctrlKey || event.altKey || event.metaKey) return;
        event.preventDefault();
        if (text.value.trim()) reply.requestSubmit();
      });
      text.addEventListener("input", function () {
        var now = Date.now();
        if (!text.value.trim() || now - toldAt < TYPING_EVERY_MS || !csrf) return;
        toldAt = now;
        fetch(reply.dataset.typing, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ csrf: csrf.value }).toString(),
        }).catch(function () {});
      });
    }
  }

  // --- a file dropped on the composer goes into the attach form's file picker --------------

  var attach = document.getElementById("attach");
  var picker = attach ? attach.querySelector('input[type="file"]') : null;
  if (attach && picker && typeof DataTransfer === "function") {
    var dropHint = attach.querySelector(".drop-hint");
    if (dropHint) dropHint.hidden = false;
    var choose = function (file) {
      var chosen = new DataTransfer();
      chosen.items.add(file); // one file per message, as on WhatsApp's composer
      picker.files = chosen.files;
      picker.dispatchEvent(new Event("change"));
      var caption = attach.querySelector('input[name="caption"]');
      if (caption && picker.checkValidity()) caption.focus();
    };
    var carriesFiles = function (event) {
      var types = event.dataTransfer ? event.dataTransfer.types : [];
      return Array.prototype.indexOf.call(types, "Files") >= 0;
    };
    // A picture pasted into the answer box goes into the picker too.
    if (reply) {
      reply.addEventListener("paste", function (event) {
        var pasted = event.clipboardData ? event.clipboardData.files : null;
        if (!pasted || !pasted.length) return;
        event.preventDefault();
        choose(pasted[0]);
      });
    }
    [attach, reply].forEach(function (zone) {
      if (!zone) return;
      zone.addEventListener("dragover", function (event) {
        if (!carriesFiles(event)) return;
        event.preventDefault();
        attach.classList.add("dropping");
      });
      zone.addEventListener("dragleave", function () {
        attach.classList.remove("dropping");
      });
      zone.addEventListener("drop", function (event) {
        if (!carriesFiles(event)) return;
        event.preventDefault();
        attach.classList.remove("dropping");
        var dropped = event.dataTransfer.files;
        if (dropped && dropped.length) choose(dropped[0]);
      });
    });
    // A file far larger than any message takes is refused here, before it is uploaded (the
    // gateway refuses it too, with the same sentence).
    picker.addEventListener("change", function () {
      var largest = Number(attach.dataset.largest) || 0;
      var file = picker.files && picker.files[0];
      picker.setCustomValidity(file && largest && file.size > largest ? attach.dataset.tooLarge || "" : "");
      picker.reportValidity();
    });
  }

  // --- the event stream, reconnected with backoff ------------------------------------------

  var source = null;
  var wait = RECONNECT_FIRST_MS;
  var dropped = false;

  function data(event) {
    try {
      return JSON.parse(event.data);
    } catch (e) {
      return {};
    }
  }

  function everything() {
    if (list) refreshList();
    if (thread) {
      refreshThread();
      refreshTicks();
      refreshHeading();
    }
    refreshUnread();
  }

  function ours(said) {
    return thread && said.contact === contact;
  }

  function connect() {
    source = new EventSource("/inbox/events");
    source.addEventListener("open", function () {
      wait = RECONNECT_FIRST_MS;
      document.documentElement.dataset.live = "open";
      if (dropped) say("");
      dropped = false;
      // What happened while the stream was down, or between the page and its stream.
      everything();
    });
    source.addEventListener("message", function (event) {
      var said = data(event);
      if (list) refreshList();
      if (ours(said)) {
        refreshThread();
        refreshTicks();
        if (presence) presence.textContent = ""; // the answer (or a new question) is here
      }
      refreshUnread();
    });
    source.addEventListener("status", function (event) {
      var said = data(event);
      if (thread && said.wamid && thread.querySelector('li[data-wamid="' + CSS.escape(said.wamid) + '"]')) {
        refreshTicks();
      }
    });
    source.addEventListener("activity", function (event) {
      if (list) refreshList();
      if (ours(data(event))) refreshThread();
    });
    source.addEventListener("conversation", function (event) {
      if (list) refreshList();
      if (ours(data(event))) {
        refreshHeading();
        refreshThread();
      }
      refreshUnread();
    });
    source.addEventListener("typing", function (event) {
      var said = data(event);
      if (ours(said) && String(said.agent_id) !== me) showTyping(said.name || "");
    });
    source.addEventListener("lagged", everything);
    source.addEventListener("signed-out", function () {
      source.close();
      source = null;
      var notice = document.createElement("p");
      notice.className = "error";
      notice.setAttribute("role", "alert");
      notice.textContent = status ? status.dataset.signedOut || "" : "";
      var main = document.getElementById("main");
      if (main) main.insertBefore(notice, main.firstChild);
    });
    source.addEventListener("error", function () {
      dropped = true;
      document.documentElement.dataset.live = "closed";
      if (status) say(status.dataset.offline || "");
      // The browser retries a dropped stream itself; a refused one (signed out, too many
      // pages, the gateway restarting) is retried here, each time waiting longer.
      if (source && source.readyState === EventSource.CLOSED) {
        source = null;
        setTimeout(connect, wait);
        wait = Math.min(wait * 2, RECONNECT_MOST_MS);
      }
    });
  }

  // --- keyboard shortcuts, never while typing in a field -----------------------------------

  function inField(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function move(step) {
    var links = rows();
    if (!links.length) return;
    var at = links.indexOf(document.activeElement);
    var next = at < 0 ? (step > 0 ? 0 : links.length - 1) : Math.max(0, Math.min(links.length - 1, at + step));
    links[next].focus();
  }

  function focusField(id) {
    var field = document.getElementById(id);
    if (!field) return false;
    field.focus();
    return true;
  }

  function submitAssignToMe() {
    var form = document.querySelector('main form[action$="/assign"]');
    var agent = form ? form.querySelector('input[name="agent"]') : null;
    if (!form || !agent || agent.value === "") return false; // already mine: never unassign
    form.requestSubmit();
    return true;
  }

  function submitResolve() {
    var form = document.querySelector('main form[action$="/status"]');
    var choice = form ? form.querySelector('select[name="status"]') : null;
    if (!form || !choice) return false;
    choice.value = "resolved";
    form.requestSubmit();
    return true;
  }

  function showHelp() {
    if (help && !help.open) help.showModal();
    return Boolean(help);
  }

  var shortcuts = {
    j: function () { if (!list) return false; move(1); return true; },
    k: function () { if (!list) return false; move(-1); return true; },
    o: function () {
      var links = rows();
      var chosen = links.indexOf(document.activeElement) >= 0 ? document.activeElement : links[0];
      if (!chosen) return false;
      chosen.click();
      return true;
    },
    u: function () { if (!thread) return false; window.location.assign("/inbox"); return true; },
    r: function () { return focusField("text"); },
    n: function () { return focusField("note"); },
    a: submitAssignToMe,
    e: submitResolve,
    "/": function () {
      var search = document.querySelector('input[type="search"], #search');
      if (!search) return false;
      search.focus();
      return true;
    },
    "?": showHelp,
  };

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && inField(event.target)) {
      event.target.blur();
      return;
    }
    if (event.defaultPrevented || event.ctrlKey || event.altKey || event.metaKey) return;
    if (inField(event.target) || (help && help.open)) return;
    var action = shortcuts[event.key];
    if (action && action()) event.preventDefault();
  });

  var opener = document.getElementById("shortcuts-open");
  if (opener && help) {
    opener.hidden = false;
    opener.addEventListener("click", showHelp);
  }

  refreshUnread();
  connect();
})();
