// Airlock dashboard: reloads the page when the reviews it shows changed (see
// src/admin/dashboard/live.rs). Asks /ui/version with If-None-Match; 304 means unchanged.
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
        location.replace(target());
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
    if (!document.hidden && changed && !busy()) location.replace(target());
  });
  later();
})();
