// augur's dashboard: polls the admin API once a second and draws the selected rollout.
// Plain JavaScript, no dependencies; charts are inline SVG.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
let selected = new URLSearchParams(location.search).get("rollout");
let latest = null;

$("token").value = sessionStorage.getItem("augur-admin-token") || "";
$("token").addEventListener("change", () => sessionStorage.setItem("augur-admin-token", $("token").value));
$("rollout-select").addEventListener("change", (e) => { selected = e.target.value; refresh(); });
for (const verb of ["start", "promote", "pause", "resume", "abort"]) {
  $(verb).addEventListener("click", () => command(verb));
}

async function command(verb) {
  if (!latest) return;
  const headers = {};
  const token = $("token").value.trim();
  if (token) headers["Authorization"] = "Bearer " + token;
  const msg = $("message");
  try {
    const r = await fetch("/rollouts/" + latest.name + "/" + verb, { method: "POST", headers });
    const text = await r.text();
    if (r.ok) {
      const d = JSON.parse(text).decision;
      msg.className = "";
      msg.textContent = verb + ": " + d.from.phase + " → " + d.to.phase + " (canary " + d.weights.canary + "%)";
    } else {
      msg.className = "error";
      msg.textContent = verb + " refused (" + r.status + "): " + text.trim();
    }
  } catch (e) {
    msg.className = "error";
    msg.textContent = verb + " failed: " + e;
  }
  refresh();
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + " answered " + r.status);
  return r.json();
}

async function refresh() {
  try {
    const all = (await getJson("/rollouts")).rollouts;
    $("empty").hidden = all.length > 0;
    $("rollout").hidden = all.length === 0;
    if (all.length === 0) return;
    const select = $("rollout-select");
    const names = all.map((r) => r.name);
    if (select.options.length !== names.length || names.some((n, i) => select.options[i].value !== n)) {
      select.replaceChildren(...names.map((n) => new Option(n, n)));
    }
    latest = all.find((r) => r.name === selected || r.name.split("/").pop() === selected) || all[0];
    select.value = latest.name;
    renderSummary(latest);
    const history = await getJson("/rollouts/" + latest.name + "/history");
    renderHistory(history);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("updated").textContent = "admin API unreachable: " + e.message;
  }
}

function stepText(s) {
  if (typeof s === "string") return s === "analysis" ? "analysis (gate)" : s;
  if ("set_weight" in s) return "setWeight " + s.set_weight + "%";
  if ("pause" in s) return s.pause.duration_s == null ? "pause (until promoted)" : "pause " + s.pause.duration_s + " s";
  if ("set_header_route" in s) return "setHeaderRoute " + s.set_header_route.name;
  if ("set_mirror_route" in s) return "setMirrorRoute " + s.set_mirror_route.name + " " + s.set_mirror_route.percent + "%";
  return JSON.stringify(s);
}

function outcomeName(o) { return typeof o === "string" ? o : Object.keys(o)[0]; }

function fmt(v, kind) {
  if (v == null) return "–";
  if (kind === "latency") return v.toFixed(1) + " ms";
  if (kind === "rate") return (v * 100).toFixed(1) + "%";
  return Math.abs(v) < 10 ? v.toFixed(4) : v.toFixed(1);
}

function renderSummary(r) {
  $("rollout-name").textContent = r.name;
  const phase = r.state.phase;
  $("phase").textContent = phase.replace("_", " ");
  $("phase").className = "badge " + phase;
  $("step").textContent = r.step == null ? "–" : (r.step + 1) + "/" + r.steps.length;
  // A shadow-only policy sets no weights (the routes' own apply) and takes no commands.
  const shadowOnly = phase === "shadowing";
  $("stable-weight").textContent = shadowOnly ? "unchanged" : r.weights.stable + "%";
  $("canary-weight").textContent = shadowOnly ? "none" : r.weights.canary + "%";
  $("weight-bar").style.width = (shadowOnly ? 0 : r.weights.canary) + "%";
  $("buttons").hidden = shadowOnly;
  renderShadow(r.shadow);
  $("labels").textContent = r.label_rate == null ? "" : (r.label_rate * 100).toFixed(1) + "% of predictions labelled";
  const done = phase === "promoted";
  $("steps").replaceChildren(...r.steps.map((s, i) => {
    const li = document.createElement("li");
    li.textContent = stepText(s);
    if (done || (r.step != null && i < r.step)) li.className = "done";
    if (r.step === i) li.className = "current";
    return li;
  }));
  const last = r.decisions[0];
  $("last-reason").textContent = last ? last.reason : "–";
  const latencyTests = ["cs_quantile_share", "cs_log_latency", "mann_whitney", "quantile_threshold", "msprt_log_latency"];
  const kindOf = (v) => latencyTests.includes(v.test) ? "latency"
    : ["cs_rate", "newcombe", "two_proportion_z", "fisher_exact", "rate_threshold", "msprt_rate"].includes(v.test) ? "rate" : null;
  $("verdicts").replaceChildren(...r.verdicts.map((v) => {
    const kind = kindOf(v);
    const tr = row([v.metric, outcomeName(v.outcome), fmt(v.stable, kind), fmt(v.canary, kind),
      signed(v.bound), signed(v.allowance), v.n_stable + " / " + v.n_canary]);
    tr.children[1].className = outcomeName(v.outcome);
    tr.title = (v.measure ? "bound and allowance of " + v.measure + ". " : "") + v.reason;
    return tr;
  }));
  const deadline = r.gate_deadline;
  $("gate-wait").textContent = deadline == null ? ""
    : "This gate waits for evidence until " + new Date(deadline * 1000).toLocaleTimeString()
      + "; it opens when every metric's bound is inside its allowance.";
  $("gates").replaceChildren(...(r.gates || []).slice().reverse().map((g) => row([
    String(g.step + 1), g.outcome, waited(g.ended - g.started),
    g.verdicts.filter((v) => v.allowance != null).map((v) =>
      v.metric + " " + signed(v.bound) + " vs " + signed(v.allowance) + " (" + v.n_stable + " / " + v.n_canary + ")").join("; "),
  ])));
}

// The shadow model's share and each arm's agreement with it (rate, 95% interval, count).
function renderShadow(sh) {
  $("shadow").hidden = !sh;
  if (!sh) return;
  const pct = (v) => (v * 100).toFixed(1) + "%";
  const arms = ["stable", "canary"].filter((a) => sh.agreement[a]).map((a) => {
    const g = sh.agreement[a];
    if (g.rate == null) return a + " agrees: no comparison yet";
    return a + " agrees " + pct(g.rate) + " (95% CI " + pct(g.ci95[0]) + "–" + pct(g.ci95[1]) + ", "
      + g.agreed + " of " + g.compared + ")";
  });
  $("shadow").textContent = "shadow " + sh.model + " scores " + sh.percentage + "% of requests; " + arms.join("; ");
}

function signed(v) { return v == null ? "–" : (v >= 0 ? "+" : "") + v.toFixed(4); }

function waited(s) {
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    td.textContent = c;
    tr.appendChild(td);
  }
  return tr;
}

function renderHistory(h) {
  const pts = h.points;
  const decisions = h.decisions.filter((d) => d.from.phase !== d.to.phase || d.actions.length);
  const marks = decisions.map((d) => d.time);
  chart("chart-weights", pts, [{ cls: "canary", label: "canary", y: (p) => p.weights.canary }], { max: 100, marks });
  chart("chart-latency", pts, [
    { cls: "stable", label: "stable p95", y: (p) => p.stable.p95_ms },
    { cls: "canary", label: "canary p95", y: (p) => p.canary.p95_ms },
    { cls: "stable dashed", label: "stable p50", y: (p) => p.stable.p50_ms },
    { cls: "canary dashed", label: "canary p50", y: (p) => p.canary.p50_ms },
  ], { marks });
  const pct = (f) => (p) => (f(p) == null ? null : f(p) * 100);
  chart("chart-errors", pts, [
    { cls: "stable", label: "stable", y: pct((p) => p.stable.error_rate) },
    { cls: "canary", label: "canary", y: pct((p) => p.canary.error_rate) },
  ], { marks, minMax: 5 });
  const metric = (p, kind, arm) => {
    const m = p.metrics.find((m) => m.metric.includes(kind));
    return m ? m[arm] : null;
  };
  chart("chart-accuracy", pts, [
    { cls: "stable", label: "stable", y: pct((p) => metric(p, "accuracy", "stable")) },
    { cls: "canary", label: "canary", y: pct((p) => metric(p, "accuracy", "canary")) },
  ], { max: 100, marks });
  chart("chart-agreement", pts, [
    { cls: "stable", label: "stable", y: pct((p) => p.stable.shadow_agreement) },
    { cls: "canary", label: "canary", y: pct((p) => p.canary.shadow_agreement) },
  ], { max: 100, marks });
  $("decisions").replaceChildren(...h.decisions.slice().reverse().map((d) =>
    row([new Date(d.time * 1000).toLocaleTimeString(), d.from.phase + " → " + d.to.phase, d.weights.canary + "%", d.reason])));
}

// A line chart of `series` over the points' times, with vertical marks at decisions.
function chart(id, pts, series, opts) {
  const W = 420, H = 170, L = 36, R = 8, T = 18, B = 18;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.setAttribute("preserveAspectRatio", "none");
  const el = (name, attrs, text) => {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  const values = series.flatMap((s) => pts.map(s.y)).filter((v) => v != null && isFinite(v));
  const max = opts.max || Math.max(opts.minMax || 1, ...values) * 1.1;
  const t0 = pts.length ? pts[0].t : 0, t1 = pts.length ? pts[pts.length - 1].t : 1;
  const x = (t) => L + (W - L - R) * (t1 > t0 ? (t - t0) / (t1 - t0) : 1);
  const y = (v) => H - B - (H - T - B) * Math.min(v, max) / max;
  el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" });
  el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" });
  el("text", { x: 2, y: T + 4 }, fmtAxis(max));
  el("text", { x: 2, y: H - B }, "0");
  if (pts.length) {
    el("text", { x: L, y: H - 4 }, new Date(t0 * 1000).toLocaleTimeString());
    el("text", { x: W - R - 48, y: H - 4 }, new Date(t1 * 1000).toLocaleTimeString());
  }
  for (const t of opts.marks || []) {
    if (t >= t0 && t <= t1) el("line", { x1: x(t), y1: T, x2: x(t), y2: H - B, class: "decision" });
  }
  let lx = L + 4;
  for (const s of series) {
    let d = "", pen = "M";
    for (const p of pts) {
      const v = s.y(p);
      if (v == null || !isFinite(v)) { pen = "M"; continue; }
      d += pen + x(p.t).toFixed(1) + "," + y(v).toFixed(1) + " ";
      pen = "L";
    }
    if (d) el("path", { d, class: s.cls });
    const last = pts.map(s.y).filter((v) => v != null).pop();
    el("text", { x: lx, y: 11, class: "legend-" + s.cls }, s.label + (last == null ? "" : " " + fmtAxis(last)));
    lx += 100;
  }
  $(id).replaceChildren(svg);
}

function fmtAxis(v) { return v >= 100 ? v.toFixed(0) : v.toFixed(1); }

refresh();
setInterval(refresh, 1000);
