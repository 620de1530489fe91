// The handoff feed of aster_nb's dashboard (anywidget ESM, no imports, no network).
// The kernel syncs `entries`, newest first; each entry is one `.aster-handoff` element.
// Text goes in through textContent only: handoffs are model-written.

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function score(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return String(Number(value.toPrecision(6)));
}

function section(title, body, cls) {
  const box = el("div", `aster-handoff-section ${cls}`);
  box.appendChild(el("div", "aster-handoff-label", title));
  box.appendChild(el("div", "aster-handoff-text", body && body.trim() ? body : "(nothing)"));
  return box;
}

// The report's warning signs as badges (the sentence with the numbers on hover and below).
function flags(list) {
  const box = el("div", "aster-handoff-flags");
  for (const f of list) {
    const badge = el("span", `aster-flag aster-flag-${f.kind}`, f.kind.replace("_", " "));
    badge.title = f.text;
    box.appendChild(badge);
  }
  return box;
}

// What the round tried, by code site: tries, evaluations, failures, raises and their gain.
function sites(rows, more) {
  const table = el("table", "aster-handoff-sites");
  const head = el("tr");
  for (const t of ["site", "tried", "eval", "failed", "raised", "gain"]) head.appendChild(el("th", "", t));
  table.appendChild(head);
  for (const s of rows) {
    const tr = el("tr");
    tr.appendChild(el("td", "aster-site", s.site));
    for (const k of ["tried", "evaluated", "failed", "raised"]) tr.appendChild(el("td", "", s[k]));
    tr.appendChild(el("td", s.raised ? "aster-up" : "", s.raised ? `+${score(s.gain)}` : "–"));
    table.appendChild(tr);
  }
  if (more > 0) {
    const tr = el("tr");
    const td = el("td", "aster-site-more", `… ${more} more site(s) in the store`);
    td.colSpan = 6;
    tr.appendChild(td);
    table.appendChild(tr);
  }
  return table;
}

function entry(h, i) {
  const card = el("div", "aster-handoff");
  card.dataset.worker = h.worker;
  card.dataset.round = String(h.round);
  const head = el("div", "aster-handoff-head");
  head.appendChild(el("span", "aster-handoff-round", `round ${h.round}`));
  head.appendChild(el("span", "aster-handoff-worker", h.worker));
  const change = `${score(h.base_score)} → ${score(h.best_score)}`;
  const gain = el("span", "aster-handoff-score", change);
  if (typeof h.best_score === "number" && typeof h.base_score === "number") {
    if (h.best_score > h.base_score) gain.classList.add("aster-up");
  }
  head.appendChild(gain);
  card.appendChild(head);
  if (h.flags && h.flags.length) card.appendChild(flags(h.flags));
  if (h.goal) card.appendChild(el("div", "aster-handoff-goal", h.goal));
  card.appendChild(section("Done", h.done, "aster-handoff-done"));
  card.appendChild(section("Learned", h.learned, "aster-handoff-learned"));
  card.appendChild(section("Concerns", h.concerns, "aster-handoff-concerns"));
  if (h.sites && h.sites.length) {
    const box = el("details", "aster-handoff-section aster-handoff-bysite");
    box.open = i === 0; // the newest open; older ones one click away
    box.appendChild(el("summary", "aster-handoff-label", "By site"));
    box.appendChild(sites(h.sites, h.sites_more || 0));
    card.appendChild(box);
  }
  return card;
}

function render({ model, el: root }) {
  const list = el("div", "aster-handoff-list");
  root.appendChild(list);
  const draw = () => {
    const entries = model.get("entries") || [];
    const nodes = entries.length
      ? entries.map((h, i) => entry(h, i))
      : [el("div", "aster-handoff-empty", "No handoffs yet: each worker writes one per round.")];
    list.replaceChildren(...nodes);
  };
  draw();
  model.on("change:entries", draw);
  return () => model.off("change:entries", draw);
}

export default { render };
