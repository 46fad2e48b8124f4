// droidfleet console: live panels. An element with data-live="URL" is kept up to date by the
// server-sent events at URL: each `update` event carries the panel's new HTML (rendered and
// escaped by the server), and `end` says nothing more will change. This is the only script the
// pages load; there is no inline script anywhere.
"use strict";

function follow(panel) {
  const source = new EventSource(panel.dataset.live);
  source.addEventListener("update", (event) => {
    panel.innerHTML = event.data;
    panel.dataset.updates = String(Number(panel.dataset.updates || "0") + 1);
  });
  source.addEventListener("end", () => {
    source.close();
    panel.dataset.ended = "true";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(follow);
});
