// Airlock dashboard script (src/admin/dashboard/live.rs).
//
// 1. The decision key. Sign-in answers with a page holding this session's decision key; it is
//    kept in this origin's localStorage (scheme, host and port: another port on the same host,
//    which receives the session cookie, cannot read it) and copied into every decision form.
//    Only the sign-in response carries it, so a stolen session cookie cannot decide.
// 2. Live reload: the page reloads when the reviews it shows changed. Asks /ui/version with
//    If-None-Match; 304 means unchanged. The scroll position survives the reload.
(function () {
  "use strict";
  var KEY = "airlock-decision-key";
  try {
    var signedIn = document.getElementById("signed-in");
    if (signedIn) {
      localStorage.setItem(KEY, signedIn.getAttribute("data-decision-key") || "");
      location.replace("/ui");
      return;
    }
    var key = localStorage.getItem(KEY) || "";
    var fields = document.querySelectorAll('input[name="dk"]');
    for (var i = 0; i < fields.length; i++) fields[i].value = key;
  } catch (e) {
    // Storage refused: a decision is then refused by the server, with the reason.
  }
})();

(function () {
  "use strict";
  var body = document.body;
  var version = body.getAttribute("data-version");
  if (!version) return;
  var etag = '"' + version + '"';
  var every = 3000;
  var notice = document.getElementById("live");

  function say(text) {
    if (notice) notice.textContent = text;
  }

  // The page's own GET address: a page shown after a POST (a decision) reloads by GET.
  function target() {
    var self = body.getAttribute("data-self");
    return self && self.indexOf("/ui") === 0 ? self : location.pathname + location.search;
  }

  // Is the reviewer in the middle of something a reload would lose?
  function busy() {
    var a = document.activeElement;
    if (a && (a.tagName === "TEXTAREA" || a.tagName === "INPUT" || a.tagName === "SELECT")) return true;
    var fields = document.querySelectorAll("textarea");
    for (var i = 0; i < fields.length; i++) if (fields[i].value.trim() !== "") return true;
    return false;
  }

  // Back where the reviewer was before the last reload of this same page.
  var spot = "airlock-scroll:" + target();
  try {
    var y = sessionStorage.getItem(spot);
    if (y !== null) {
      sessionStorage.removeItem(spot);
      window.scrollTo(0, parseInt(y, 10) || 0);
    }
  } catch (e) {}
  function reload() {
    try {
      sessionStorage.setItem(spot, String(window.scrollY || 0));
    } catch (e) {}
    location.replace(target());
  }

  var changed = false;
  function poll() {
    if (document.hidden) return later();
    fetch("/ui/version", {
      headers: { "If-None-Match": etag },
      cache: "no-store",
      credentials: "same-origin",
      redirect: "error",
    }).then(function (r) {
      if (r.status === 304) return later();
      if (r.status !== 200) {
        say("Live updates stopped (signed out?). Reload the page.");
        return;
      }
      var tag = r.headers.get("ETag");
      if (tag && tag !== etag) {
        etag = tag;
        changed = true;
      }
      if (changed && !busy()) {
        reload();
        return;
      }
      if (changed) say("This page changed since it was shown; it reloads when you leave the form.");
      later();
    }, function () {
      later();
    });
  }
  function later() {
    setTimeout(poll, every);
  }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && changed && !busy()) reload();
  });
  later();
})();
