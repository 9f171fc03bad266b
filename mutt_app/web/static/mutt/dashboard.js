// The dashboard's polling and charts. Figures come from the page's metrics URL (JSON); Chart.js is
// the app's own copy (static/vendor/chart.umd.js). window.muttDashboard exposes the charts and the
// last answer, for the browser tests.
(function () {
  "use strict";
  const script = document.getElementById("dashboard-script");
  const metricsUrl = script.dataset.metricsUrl;
  const ruleUrl = script.dataset.ruleUrl;
  const ruleCreateUrl = script.dataset.ruleCreateUrl;  // empty: this person may not create rules
  const pollMs = Number(script.dataset.pollSeconds) * 1000;
  const keepPoints = 120;
  const state = { charts: {}, last: null, polls: 0 };
  window.muttDashboard = state;

  function text(id, value) {
    const el = document.getElementById(id);
    if (el) el.textContent = value === null || value === undefined ? "n/a" : String(value);
  }

  function cell(row, value, href) {
    const td = row.insertCell();
    if (href) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = value;
      td.appendChild(a);
    } else {
      td.textContent = value === null || value === undefined ? "" : String(value);
    }
  }

  function minuteLabels(end, count) {
    const last = new Date(end);
    const labels = [];
    for (let i = count - 1; i >= 0; i--) {
      const t = new Date(last.getTime() - i * 60000);
      labels.push(t.toISOString().slice(11, 16));
    }
    return labels;
  }

  function makeCharts() {
    state.charts.events = new Chart(document.getElementById("chart-events"), {
      type: "line",
      data: { labels: [], datasets: [{ label: "events/min", data: [], fill: true, tension: 0.2,
        borderColor: "#0d6efd", backgroundColor: "rgba(13,110,253,0.15)", pointRadius: 0 }] },
      options: { animation: false, maintainAspectRatio: false, scales: { y: { beginAtZero: true } } },
    });
    state.charts.queues = new Chart(document.getElementById("chart-queues"), {
      type: "line",
      data: { labels: [], datasets: [
        { label: "mutt.classify", data: [], borderColor: "#6610f2", pointRadius: 0 },
        { label: "mutt.forward", data: [], borderColor: "#20c997", pointRadius: 0 },
        { label: "mutt.forward.page", data: [], borderColor: "#ffc107", pointRadius: 0 },
        { label: "dead letters", data: [], borderColor: "#dc3545", pointRadius: 0 },
      ] },
      options: { animation: false, maintainAspectRatio: false, scales: { y: { beginAtZero: true } } },
    });
    state.charts.rules = new Chart(document.getElementById("chart-rules"), {
      type: "bar",
      data: { labels: [], datasets: [{ label: "events", data: [], backgroundColor: "#fd7e14" }] },
      options: { animation: false, maintainAspectRatio: false, indexAxis: "y",
        plugins: { legend: { display: false } } },
    });
  }

  function show(m) {
    const eps = m.events_per_second || {};
    text("eps-1m", eps["1m"]);
    text("eps-1h", eps["1h"]);
    text("eps-24h", eps["24h"]);
    const queues = m.queues || {};
    text("queue-classify", m.queues ? queues["mutt.classify"] : null);
    text("queue-forward", m.queues ? queues["mutt.forward"] : null);
    text("queue-page", m.queues ? queues["mutt.forward.page"] : null);
    text("dlq-depth", m.dlq_depth);
    text("poison-count", m.poison_count);
    const circuit = m.circuit_breaker;
    const circuitEl = document.getElementById("circuit-state");
    circuitEl.textContent = circuit ? circuit.state : "n/a";
    circuitEl.className = "value" + (circuit ? " circuit-" + circuit.state : "");
    if (circuit) circuitEl.title = "opens after " + circuit.threshold + " failures, for " + circuit.timeout_seconds + " s";
    text("updated-at", new Date(m.timestamp).toLocaleTimeString());

    const errors = document.getElementById("dashboard-errors");
    if (m.errors && m.errors.length) {
      errors.textContent = "Some figures are missing: " + m.errors.join("; ");
      errors.classList.remove("d-none");
    } else {
      errors.classList.add("d-none");
    }

    if (m.events_per_minute) {
      const ev = state.charts.events;
      ev.data.labels = minuteLabels(m.events_per_minute_end, m.events_per_minute.length);
      ev.data.datasets[0].data = m.events_per_minute;
      ev.update();
    }
    const q = state.charts.queues;
    q.data.labels.push(new Date(m.timestamp).toLocaleTimeString());
    q.data.datasets[0].data.push(m.queues ? queues["mutt.classify"] : null);
    q.data.datasets[1].data.push(m.queues ? queues["mutt.forward"] : null);
    q.data.datasets[2].data.push(m.queues ? queues["mutt.forward.page"] : null);
    q.data.datasets[3].data.push(m.dlq_depth);
    if (q.data.labels.length > keepPoints) {
      q.data.labels.shift();
      q.data.datasets.forEach(function (d) { d.data.shift(); });
    }
    q.update();

    const rules = m.top_rules || [];
    const rc = state.charts.rules;
    rc.data.labels = rules.map(function (r) { return "#" + r.rule_id + " " + (r.match_string || r.trap_oid || r.match_type || ""); });
    rc.data.datasets[0].data = rules.map(function (r) { return r.events; });
    rc.update();
    const rbody = document.querySelector("#top-rules tbody");
    rbody.innerHTML = "";
    rules.forEach(function (r) {
      const row = rbody.insertRow();
      cell(row, "#" + r.rule_id, ruleUrl + "?id=" + r.rule_id);
      cell(row, (r.match_type || "") + " " + (r.match_string || r.trap_oid || ""));
      cell(row, r.team);
      cell(row, r.events);
    });
    const hbody = document.querySelector("#top-hosts tbody");
    hbody.innerHTML = "";
    (m.top_unhandled_hosts || []).forEach(function (h) {
      const row = hbody.insertRow();
      cell(row, h.hostname);
      cell(row, h.events);
    });
    showStorms(m);
    showQuietHosts(m);
    showTemplates(m.unhandled_templates);
  }

  // Heartbeats: the watched hosts quiet now, longest quiet first.
  function showQuietHosts(m) {
    text("heartbeat-quiet-count", m.heartbeat_quiet_count);
    rows("#heartbeat-quiet", m.heartbeat_quiet_hosts, function (row, q) {
      cell(row, q.host);
      cell(row, q.heartbeat);
      cell(row, q.interval_minutes);
      cell(row, q.last_event ? new Date(q.last_event).toLocaleString() : "never");
      cell(row, new Date(q.alerted_at).toLocaleString());
    });
  }

  // Unhandled templates: each with a link to the rule form, filled in from its suggested rule.
  function showTemplates(t) {
    text("templates-hours", t ? t.hours : null);
    text("templates-scanned", t ? t.scanned : null);
    document.getElementById("templates-truncated").classList.toggle("d-none", !(t && t.truncated));
    rows("#unhandled-templates", t ? t.templates : [], function (row, item) {
      const code = document.createElement("code");
      code.textContent = item.template;
      code.title = item.example;
      row.insertCell().appendChild(code);
      cell(row, item.events);
      cell(row, item.hosts);
      cell(row, item.top_hosts.map(function (h) { return h.hostname + " (" + h.events + ")"; }).join(", "));
      cell(row, new Date(item.last_seen).toLocaleString());
      if (ruleCreateUrl && item.suggested_rule) {
        cell(row, "create a rule", ruleCreateUrl + "?" + new URLSearchParams(item.suggested_rule).toString());
        row.cells[row.cells.length - 1].firstChild.className = "create-rule";
      } else {
        cell(row, "");
      }
    });
  }

  function ruleCell(row, id) {
    if (id === null || id === undefined) cell(row, "");
    else cell(row, "#" + id, ruleUrl + "?id=" + id);
  }

  function rows(selector, items, fill) {
    const body = document.querySelector(selector + " tbody");
    body.innerHTML = "";
    (items || []).forEach(function (item) { fill(body.insertRow(), item); });
  }

  // Storms: held back by reason, top storming devices and rules, pairs flapping now.
  function showStorms(m) {
    const held = m.held_by_reason;
    rows("#held-by-reason", held ? Object.keys(held) : [], function (row, reason) {
      cell(row, reason);
      cell(row, held[reason]);
    });
    rows("#storming-devices", m.top_storming_devices, function (row, d) {
      cell(row, d.hostname);
      cell(row, d.held);
    });
    rows("#storming-rules", m.top_storming_rules, function (row, r) {
      ruleCell(row, r.rule_id);
      cell(row, (r.match_type || "") + " " + (r.match_string || r.trap_oid || ""));
      cell(row, r.team);
      cell(row, r.held);
    });
    text("flapping-count", m.flapping_count);
    rows("#flapping-pairs", m.flapping_pairs, function (row, p) {
      cell(row, p.hostname);
      ruleCell(row, p.problem_rule_id);
      const clears = row.insertCell();
      (p.clear_rule_ids || []).forEach(function (id, i) {
        if (i) clears.appendChild(document.createTextNode(" "));
        const a = document.createElement("a");
        a.href = ruleUrl + "?id=" + id;
        a.textContent = "#" + id;
        clears.appendChild(a);
      });
      cell(row, p.transitions);
      cell(row, p.held);
      cell(row, new Date(p.started).toLocaleTimeString());
    });
  }

  async function poll() {
    try {
      const response = await fetch(metricsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.redirected || !response.ok) throw new Error("HTTP " + response.status);
      const m = await response.json();
      state.last = m;
      state.polls += 1;
      show(m);
    } catch (err) {
      const errors = document.getElementById("dashboard-errors");
      errors.textContent = "Could not refresh the figures: " + err.message;
      errors.classList.remove("d-none");
    } finally {
      setTimeout(poll, pollMs);
    }
  }

  makeCharts();
  poll();
})();
