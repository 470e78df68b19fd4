// plano console: live refresh of server-rendered pages, without a framework or a build step.
// The page's <main data-refresh="N"> says how often (seconds; 0 = never). The page is fetched
// again and its <main> swapped in: the server escapes everything, and HTML parsed by
// DOMParser and moved into the page never runs scripts. A 401 (session expired, logged out
// elsewhere) reloads the page, which then shows the login form.
(function () {
  "use strict";
  var timer = null;
  var busy = false;

  function openDetails(main) {
    var open = [];
    main.querySelectorAll("details").forEach(function (d, i) { if (d.open) { open.push(i); } });
    return open;
  }

  function refresh() {
    var main = document.getElementById("main");
    var live = document.getElementById("live");
    if (!main || busy || (live && !live.checked) || document.hidden) { return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "x-console-refresh": "1" } })
      .then(function (resp) {
        if (resp.status === 401) { window.location.reload(); return null; }
        return resp.ok ? resp.text() : null;
      })
      .then(function (text) {
        if (!text) { return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("main");
        if (!fresh) { return; }
        var open = openDetails(main);
        main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
        var details = main.querySelectorAll("details");
        open.forEach(function (i) { if (details[i]) { details[i].open = true; } });
        main.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the gateway restarting: try again at the next tick */ })
      .then(function () { busy = false; });
  }

  function start() {
    var main = document.getElementById("main");
    var every = main ? parseInt(main.getAttribute("data-refresh") || "0", 10) : 0;
    var live = document.getElementById("live");
    if (!every || every < 1) {
      if (live && live.parentNode) { live.parentNode.hidden = true; }
      return;
    }
    timer = window.setInterval(refresh, every * 1000);
  }

  document.addEventListener("DOMContentLoaded", start);
}());
