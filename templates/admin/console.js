// Live numbers on an edition's page: every two seconds while the tab is visible, fetch the
// numbers and the chart and put them in place. The page works without this script.
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root || !window.fetch) return;
  var url = root.getAttribute("data-live-url");
  function refresh() {
    if (document.hidden) return;
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        root.querySelectorAll("[data-live]").forEach(function (el) {
          var key = el.getAttribute("data-live");
          if (!(key in data)) return;
          var value = data[key];
          if (key === "pause_reason") { el.hidden = !value; el.textContent = value || ""; return; }
          if (key === "status") { el.className = "status " + value; }
          el.textContent = typeof value === "number" && key !== "percent_done" && key !== "rate_per_s"
            ? value.toLocaleString("en") : String(value);
        });
        var bar = root.querySelector("[data-live-bar]");
        if (bar) {
          bar.style.width = data.percent_done + "%";
          bar.parentNode.setAttribute("aria-valuenow", data.percent_done);
        }
        var chart = root.querySelector("[data-live-chart]");
        if (chart && data.chart) chart.innerHTML = data.chart;
      })
      .catch(function () { /* the next tick tries again */ });
  }
  setInterval(refresh, 2000);
})();
