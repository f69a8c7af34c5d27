// msgstate console: draws the charts described in data-chart attributes and
// wires the copy buttons. No inline scripts anywhere (Content-Security-Policy).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  if (window.Chart) {
    window.Chart.defaults.animation = false;
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var config = JSON.parse(canvas.dataset.chart);
      delete config.totals;
      config.options = Object.assign(
        { responsive: true, maintainAspectRatio: false, scales: { y: { beginAtZero: true } } },
        config.options || {}
      );
      new window.Chart(canvas, config);
    });
  }
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = document.getElementById(button.dataset.copy).textContent;
      var done = function () { button.textContent = "copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { select(button.dataset.copy); });
      } else {
        select(button.dataset.copy);
      }
    });
  });
  function select(id) {
    var range = document.createRange();
    range.selectNodeContents(document.getElementById(id));
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
});
