// A plotly FigureWidget front end that loads plotly's 5 MB widget bundle lazily (anywidget ESM).
//
// anywidget gives a model 2 s to import its ESM and run initialize(); importing plotly's own
// FigureWidget ESM can take longer on a loaded machine, and a model that misses the deadline
// never gets its figure. So this module is tiny: initialize() only starts the work, the
// bundle comes once per kernel from a separate model (`_aster_bundle`) and is imported once
// per page, then plotly's own initialize/render run. Updates sent while the bundle loaded
// are covered by asking the kernel to re-send the whole figure ("aster_resync").

const MODULES = (globalThis.__asterPlotlyModules ??= new Map()); // plotly version -> module
const READY = new Map(); // figure key -> plotly's widget definition for that model

function importBundle(model) {
  const version = model.get("_aster_plotly");
  if (!MODULES.has(version)) {
    const load = (async () => {
      const bundle = await model.widget_manager.get_model(model.get("_aster_bundle"));
      const source = bundle.get("source");
      if (!source) throw new Error("the plotly bundle model has no source");
      const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
      try {
        return await import(url);
      } finally {
        URL.revokeObjectURL(url);
      }
    })();
    load.catch(() => MODULES.delete(version)); // a failed import may be retried by a new view
    MODULES.set(version, load);
  }
  return MODULES.get(version);
}

function resync(model) {
  return new Promise((resolve) => {
    const done = (msg) => {
      if (msg && msg.type === "aster_synced") {
        model.off("msg:custom", done);
        resolve();
      }
    };
    model.on("msg:custom", done);
    model.send({ type: "aster_resync" });
  });
}

async function setUp(model) {
  const mod = await importBundle(model);
  const def = mod.default(); // plotly's widget: { initialize, render }
  def.initialize({ model }); // from now on plotly's model follows every update
  await resync(model); // and now it also has what was sent before
  return def;
}

function ready(model) {
  const key = model.get("_aster_key");
  if (!READY.has(key)) READY.set(key, setUp(model));
  return READY.get(key);
}

function initialize({ model }) {
  ready(model); // not awaited: this must return well within anywidget's 2 s
}

async function render({ model, el }) {
  const note = document.createElement("div");
  note.className = "aster-figure-loading";
  note.textContent = "loading plotly…";
  el.appendChild(note);
  let def;
  try {
    def = await ready(model);
  } catch (e) {
    note.className = "aster-figure-error";
    note.textContent = `plotly could not load: ${e && e.message ? e.message : e}`;
    throw e;
  }
  note.remove();
  return def.render({ model, el });
}

export default { initialize, render };
