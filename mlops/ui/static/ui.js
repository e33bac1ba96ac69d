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
