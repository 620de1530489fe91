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

function entry(h) {
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
  if (h.goal) card.appendChild(el("div", "aster-handoff-goal", h.goal));
  card.appendChild(section("Done", h.done, "aster-handoff-done"));
  card.appendChild(section("Learned", h.learned, "aster-handoff-learned"));
  card.appendChild(section("Concerns", h.concerns, "aster-handoff-concerns"));
  return card;
}

function render({ model, el: root }) {
  const list = el("div", "aster-handoff-list");
  root.appendChild(list);
  const draw = () => {
    const entries = model.get("entries") || [];
    const nodes = entries.length
      ? entries.map(entry)
      : [el("div", "aster-handoff-empty", "No handoffs yet: each worker writes one per round.")];
    list.replaceChildren(...nodes);
  };
  draw();
  model.on("change:entries", draw);
  return () => model.off("change:entries", draw);
}

export default { render };
