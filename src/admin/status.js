// The certbind status page: fetches /status.json every 5 seconds and draws it.
"use strict";

const REFRESH_MS = 5000;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function when(epoch) {
  if (!epoch) return "unknown";
  return new Date(epoch * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function expiry(b) {
  if (b.days_left === undefined) return el("span", {}, "–");
  const d = b.days_left;
  const text = d < 0 ? "expired " + (-d) + " days ago" : d + " days";
  return el("span", {class: d < 0 ? "expired" : d < 14 ? "soon" : ""}, text);
}

function certCell(b) {
  if (b.ccspath !== undefined) return el("span", {}, "central store ", el("code", {}, b.ccspath));
  if (b.subject === undefined)
    return el("span", {class: "expired"}, "not in the store ", el("code", {}, b.certhash.slice(0, 12) + "…"));
  return el("span", {title: b.certhash}, b.subject + " ", el("code", {}, b.certhash.slice(0, 8) + "…"));
}

// A managed binding (acme=enable): its ACME state and when serve renews or tries again.
function acmeLine(a) {
  const next = a.status === "failed" || a.status === "pending" ? a.next_attempt : a.renew_after;
  const text = "ACME " + a.status + (next ? (a.status === "valid" ? ", renews " : ", next try ") + when(next) : "");
  const line = el("div", {class: "acme " + a.status}, text);
  if (a.last_error) line.append(el("div", {class: "finding"}, a.last_error));
  return line;
}

function row(b) {
  const health = el("td", {class: "health"}, el("span", {class: "badge " + b.health}, b.health));
  if (b.findings) health.append(el("div", {class: "finding"}, b.findings));
  if (b.acme) health.append(acmeLine(b.acme));
  return el("tr", {"data-key": b.key},
    el("td", {class: "num"}, b.order),
    el("td", {}, el("code", {}, b.key)),
    el("td", {}, b.rule),
    el("td", {}, certCell(b)),
    el("td", {class: "names"}, (b.names || []).join(", ") || "–"),
    el("td", {}, expiry(b)),
    health,
    el("td", {class: "num"}, b.handshakes),
    el("td", {class: "num"}, b.failures),
    el("td", {class: "num"}, b.open),
    el("td", {class: "num"}, bytes(b.bytes_in) + " / " + bytes(b.bytes_out)),
    el("td", {}, b.backend ? el("code", {}, b.backend) : "–"));
}

function draw(s) {
  document.getElementById("generation").textContent = s.generation;
  document.getElementById("changed").textContent = when(s.changed_at);
  document.getElementById("workers").textContent = s.workers.filter(w => w.pid > 0).length;
  document.getElementById("open").textContent = s.totals.open;
  document.getElementById("accepted").textContent = s.totals.accepted;
  document.getElementById("updated").textContent = new Date().toLocaleTimeString();

  const banner = document.getElementById("banner");
  if (s.errors > 0) {
    banner.className = "error";
    banner.textContent = s.errors + " error(s), " + s.warnings + " warning(s) from check: " +
      "some clients get no certificate or a wrong one. Run certbind check for the fix.";
  } else if (s.warnings > 0) {
    banner.className = "warning";
    banner.textContent = s.warnings + " warning(s) from check; " + s.bindings + " bindings.";
  } else {
    banner.className = "ok";
    banner.textContent = "All " + s.bindings + " bindings healthy.";
  }

  const ports = document.getElementById("ports");
  const parts = [];
  if (s.ports.length === 0) parts.push(el("div", {class: "empty"}, "No bindings yet: add one with certbind add sslcert."));
  for (const p of s.ports) {
    const head = el("tr", {},
      ...["#", "Binding", "Rule", "Certificate", "Names", "Expires in", "Health", "Handshakes",
          "Failures", "Open", "In / out", "Backend"].map(
        (h, i) => el("th", {class: [0, 7, 8, 9, 10].includes(i) ? "num" : ""}, h)));
    const body = el("tbody", {}, ...p.bindings.map(row));
    const sec = el("section", {"data-port": p.port},
      el("h2", {}, "Port " + p.port + " — " + p.total + " binding" + (p.total === 1 ? "" : "s") +
        ", in resolution order"),
      el("table", {}, el("thead", {}, head), body));
    if (p.bindings.length < p.total)
      sec.append(el("div", {class: "more"}, (p.total - p.bindings.length) +
        " more healthy bindings not listed; certbind show sslcert lists them all."));
    parts.push(sec);
  }
  ports.replaceChildren(...parts);
}

async function refresh() {
  try {
    const r = await fetch("/status.json", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    draw(await r.json());
    document.getElementById("stale").style.display = "none";
  } catch (e) {
    document.getElementById("stale").style.display = "block";
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
