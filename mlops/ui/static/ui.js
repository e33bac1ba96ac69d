// mlops ui: the one script. Pages work without it; it only adds keyboard help.
// "/" focuses the runs filter; hovering a chart's legend entry highlights that line.
"use strict";
document.addEventListener("keydown", function (event) {
  var filter = document.getElementById("filter");
  if (event.key === "/" && filter && document.activeElement !== filter &&
      !(document.activeElement && /INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName))) {
    event.preventDefault();
    filter.focus();
    filter.select();
  }
});
document.querySelectorAll("svg.chart .legend-entry").forEach(function (entry) {
  var run = entry.getAttribute("data-run");
  var chart = entry.closest("svg");
  function mark(on) {
    chart.querySelectorAll("g.series").forEach(function (series) {
      series.style.opacity = on && series.getAttribute("data-run") !== run ? "0.15" : "";
    });
  }
  entry.addEventListener("mouseenter", function () { mark(true); });
  entry.addEventListener("mouseleave", function () { mark(false); });
});
// A deployment's live statistics: ask this server again every two seconds, update the cells in place.
(function () {
  var servers = document.getElementById("servers");
  if (!servers || !servers.getAttribute("data-live")) { return; }
  function show(value) {
    if (value === null || value === undefined) { return ""; }
    if (typeof value === "object") { return JSON.stringify(value); }
    if (typeof value === "number" && !Number.isInteger(value)) { return String(Number(value.toPrecision(6))); }
    return String(value);
  }
  function refresh() {
    fetch(servers.getAttribute("data-live"), { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (status) {
        if (!status) { return; }
        var s = status.servers || {};
        servers.setAttribute("data-refreshed", String(Date.now()));
        servers.textContent = s.running ? s.live_workers + " live worker(s), as of " + s.as_of
          : "no server is running" + (s.as_of ? " (last report " + s.as_of + ")" : "");
        (status.variants || []).forEach(function (variant) {
          var row = document.querySelector('tr[data-variant="' + variant.variant + '"]');
          if (!row) { return; }
          row.querySelectorAll("td[data-field]").forEach(function (cell) {
            cell.textContent = show(variant[cell.getAttribute("data-field")]);
          });
        });
      })
      .catch(function () { /* the next tick tries again */ });
  }
  setInterval(refresh, 2000);
})();
