// The launch page: follows the launch's progress events and opens the session when ready.
(function () {
  "use strict";
  var box = document.getElementById("launch");
  if (!box || !window.EventSource) { return; }
  var phase = document.getElementById("launch-phase");
  var message = document.getElementById("launch-message");
  var log = document.getElementById("launch-log");
  var names = {
    waiting: "Waiting", fetching: "Fetching", building: "Building the environment",
    launching: "Starting the session", ready: "Ready", failed: "Failed"
  };
  var events = new EventSource(box.getAttribute("data-events"));
  box.setAttribute("data-state", "waiting");
  events.onmessage = function (e) {
    var p;
    try { p = JSON.parse(e.data); } catch (err) { return; }
    box.setAttribute("data-state", p.phase);
    phase.textContent = names[p.phase] || p.phase;
    if (p.phase === "building" && log) {
      log.hidden = false;
      log.textContent += p.message + "\n";
      log.scrollTop = log.scrollHeight;
    } else {
      message.textContent = p.message || "";
    }
    if (p.phase === "ready" && p.url) {
      events.close();
      window.location.assign(p.url);
    } else if (p.phase === "failed") {
      events.close();
      box.className = "launch error";
    }
  };
  events.onerror = function () {
    if (box.getAttribute("data-state") !== "ready") {
      events.close();
      box.className = "launch error";
      message.textContent = "The connection to nbforge was lost. Reload the page to try again.";
    }
  };
}());
