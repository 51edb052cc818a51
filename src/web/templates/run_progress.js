// Live progress of a worksheet run: listens to the run's Server-Sent Events and shows
// the cell and heading; reloads the page (which then shows the result) when it ends.
(function () {
  "use strict";
  var box = document.getElementById("run-progress");
  if (!box || !window.EventSource) { return; }
  var started = Date.now();
  var source = new EventSource(box.getAttribute("data-events"));
  function show(run) {
    var text;
    if (run.state === "queued") {
      text = "Waiting to start" + (run.queue_position ? ": " + run.queue_position + " ahead" : "") +
        (run.message ? " (" + run.message + ")" : "") + ".";
    } else {
      var p = run.progress;
      var secs = run.duration_secs !== null ? run.duration_secs : Math.round((Date.now() - started) / 1000);
      text = "Running" + (p.cells_total > 0 ? ": cell " + (p.cells_done + 1) + " of " + p.cells_total : "") +
        (p.heading ? " \u2014 " + p.heading : "") + " (" + secs + " s).";
    }
    box.textContent = text;
  }
  source.addEventListener("progress", function (e) { show(JSON.parse(e.data)); });
  source.addEventListener("end", function () { source.close(); window.location.reload(); });
})();
