// The job page of flask-idms-webhooks: polls the job's JSON (the page's own URL, with
// Accept: application/json), waiting Retry-After between polls, until the first answer
// that is not 202; updates the page in place (text only: nothing is parsed as HTML).
(function () {
  "use strict";
  var page = document.getElementById("job");
  if (!page || page.dataset.final === "true") {
    return;
  }
  var COUNTS = ["Processed", "Inserted", "Updated", "Skipped", "Error", "Deleted"];

  function set(name, text) {
    var found = document.querySelectorAll('[data-field="' + name + '"]');
    for (var i = 0; i < found.length; i++) {
      found[i].textContent = text;
    }
  }

  function elapsed(job) {
    if (!job.StartedOn) {
      return null;
    }
    var end = job.CompletedOn ? Date.parse(job.CompletedOn) : Date.now();
    return Math.max(0, Math.round((end - Date.parse(job.StartedOn)) / 1000));
  }

  function list(name, items, build) {
    var holder = document.querySelector('[data-field="' + name + '"]');
    if (!holder) {
      return;
    }
    while (holder.firstChild) {
      holder.removeChild(holder.firstChild);
    }
    items.forEach(function (item) {
      var entry = document.createElement("li");
      build(entry, item);
      holder.appendChild(entry);
    });
  }

  function render(job) {
    set("Status", job.Status);
    var badge = document.querySelector('[data-field="Status"]');
    if (badge) {
      badge.dataset.status = job.Status;
    }
    set("StatusDescription", job.StatusDescription);
    var bar = document.querySelector("progress");
    if (bar) {
      bar.value = job.PercentComplete;
    }
    set("PercentText", String(job.PercentComplete));
    COUNTS.forEach(function (name) {
      set(name + "Count", String(job[name + "Count"]));
    });
    set("RowCount", job.RowCount === null ? "\u2013" : String(job.RowCount));
    ["CreatedOn", "StartedOn", "UpdatedOn", "CompletedOn"].forEach(function (name) {
      set(name, job[name] || "\u2013");
    });
    var seconds = elapsed(job);
    set("Duration", seconds === null ? "\u2013" : seconds + " s");
    set("Rate", seconds ? (job.ProcessedCount / seconds).toFixed(1) : "\u2013");
    var errors = document.getElementById("errors");
    if (errors && (job.Errors.length || job.Error)) {
      errors.hidden = false;
      set("JobError", job.Error ? job.Error.Type + ": " + job.Error.Message : "");
      list("Errors", job.Errors.slice(0, Number(errors.dataset.shown || 20)), function (li, e) {
        li.textContent = "Row " + e.Row + ": " + e.Message;
      });
    }
    var chain = document.getElementById("chain");
    if (chain && job.Chain && job.Chain.length) {
      chain.hidden = false;
      list("Chain", job.Chain, function (li, entry) {
        if (entry.PollingUrl) {
          var link = document.createElement("a");
          link.href = entry.PollingUrl;
          link.textContent = entry.TaskId;
          li.appendChild(link);
        } else {
          li.textContent = entry.TaskId + ": " + (entry.Error || "");
        }
      });
    }
    document.title = document.title.replace(/ · .*$/, " · " + job.Status);
  }

  function poll() {
    var request = new XMLHttpRequest();
    request.open("GET", window.location.href);
    request.setRequestHeader("Accept", "application/json");
    request.onload = function () {
      if (request.status === 200 || request.status === 202) {
        render(JSON.parse(request.responseText));
      }
      if (request.status !== 202) {
        page.dataset.final = "true"; // the final answer (or an error): no more polls
        return;
      }
      var wait = parseInt(request.getResponseHeader("Retry-After") || "", 10);
      window.setTimeout(poll, (wait > 0 ? wait : 2) * 1000);
    };
    request.onerror = function () {
      window.setTimeout(poll, 5000);
    };
    request.send();
  }

  window.setTimeout(poll, Number(page.dataset.retryAfter || 2) * 1000);
})();
