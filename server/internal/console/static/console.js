// Vigil console: optional enhancements. Every page works without this
// script; with it, times show in the viewer's zone and a rollout's
// progress updates itself.
(function () {
  "use strict";
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d) || d.getUTCFullYear() < 2) { return; }
      if (!t.title) { t.title = t.textContent + " (UTC)"; }
      t.textContent = d.toLocaleString(undefined, { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
    });
  }
  function poll(main) {
    var every = parseInt(main.getAttribute("data-poll"), 10) * 1000;
    if (!every) { return; }
    setInterval(function () {
      var box = document.getElementById("progress");
      if (!box || document.hidden) { return; }
      fetch(box.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) { return; }
          var tpl = document.createElement("template");
          tpl.innerHTML = html;
          var fresh = tpl.content.getElementById("progress");
          if (fresh) { localTimes(fresh); box.replaceWith(fresh); }
        })
        .catch(function () {});
    }, every);
  }
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    var note = document.querySelector("[data-localnote]");
    if (note) { note.textContent = " (here: your own time zone; hover a time for UTC)"; }
    var main = document.querySelector("main[data-poll]");
    if (main) { poll(main); }
  });
})();
