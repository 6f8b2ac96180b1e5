"""The review page: one HTML file with its style and script inline, no build step, nothing
fetched from elsewhere (the machine that reviews may have no internet).

Every piece of data reaches the page through ``textContent`` or a textarea's ``value``, never
as HTML: a trace is model output, and one that writes ``<script>`` must show it, not run it.
The page's own script and style carry a per-response nonce and the Content-Security-Policy
(:mod:`r1lab.review.app`) allows nothing else, so even a slip here would not run injected
code.

Keys: ``a`` accept, ``r`` reject, ``e`` edit (then Ctrl+Enter saves, Esc cancels), ``j``/→
next, ``k``/← previous, ``u`` next undecided; none of them fire while typing in the textarea.
Actions run one after another in the order given, so keys pressed quickly each reach the
item they were meant for. A decision moves on to the next item. The item shown is in the
URL (``#7``), so a reload comes back to it.
"""

from __future__ import annotations

__all__ = ["render_page"]


def render_page(nonce: str) -> str:
    """The page, its inline script and style marked with ``nonce``."""
    return _PAGE.replace("__NONCE__", nonce)


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>r1lab review</title>
<link rel="icon" href="data:,">
<style nonce="__NONCE__">
  :root { --ok: #1a7f37; --bad: #cf222e; --edit: #9a6700; --muted: #57606a; }
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1400px;
         padding: 0 1rem 6rem; color: #1f2328; }
  header { display: flex; gap: 1rem; align-items: baseline; flex-wrap: wrap;
           border-bottom: 1px solid #d0d7de; padding: .6rem 0; }
  h1 { font-size: 1.2rem; margin: 0; }
  h2 { font-size: .85rem; text-transform: uppercase; letter-spacing: .04em;
       color: var(--muted); margin: 1rem 0 .3rem; }
  #file, .muted { color: var(--muted); }
  #bar { width: 14rem; vertical-align: middle; }
  pre { white-space: pre-wrap; word-break: break-word; background: #f6f8fa; margin: 0;
        padding: .6rem .8rem; border-radius: 6px; font: 13px/1.45 ui-monospace, monospace; }
  .columns { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
  @media (max-width: 800px) { .columns { grid-template-columns: 1fr; } }
  .badge { padding: .1rem .5rem; border-radius: 1rem; font-size: .85rem;
           border: 1px solid currentColor; }
  .undecided { color: var(--muted); } .accepted { color: var(--ok); }
  .rejected { color: var(--bad); } .edited { color: var(--edit); }
  table { border-collapse: collapse; font-size: .9rem; }
  th, td { padding: .15rem .7rem; border-bottom: 1px solid #eaeef2; text-align: left; }
  td.pass { color: var(--ok); } td.fail { color: var(--bad); font-weight: 600; }
  td.na { color: var(--muted); }
  textarea { width: 100%; box-sizing: border-box; font: 13px/1.45 ui-monospace, monospace; }
  #actions { position: fixed; bottom: 0; left: 0; right: 0; background: #fff;
             border-top: 1px solid #d0d7de; padding: .5rem 1rem; display: flex; gap: .5rem;
             flex-wrap: wrap; align-items: center; justify-content: center; }
  button { font: inherit; padding: .3rem .8rem; cursor: pointer; }
  kbd { font: 12px ui-monospace, monospace; border: 1px solid #d0d7de; border-radius: 3px;
        padding: 0 .25rem; }
  #status { min-width: 16rem; color: var(--muted); }
  #error { color: var(--bad); font-weight: 600; }
  ol { margin: 0; padding-left: 1.4rem; color: var(--muted); font-size: .9rem; }
</style>
</head>
<body>
<header>
  <h1>r1lab review</h1>
  <span id="file"></span>
  <span><progress id="bar" max="1" value="0"></progress> <span id="progress"></span></span>
</header>
<p id="error" role="alert" hidden></p>
<main id="main" hidden>
  <p><strong id="position"></strong> · id <span id="item-id"></span> ·
    <span id="language"></span> · <span id="source"></span> ·
    <span id="decision" class="badge undecided"></span></p>
  <h2>Question</h2>
  <pre id="question"></pre>
  <h2>Gold</h2>
  <pre id="gold"></pre>
  <div class="columns">
    <section><h2>Original (R1-Zero)</h2><pre id="original"></pre></section>
    <section><h2 id="rewritten-title">Rewritten</h2><pre id="rewritten"></pre></section>
  </div>
  <section id="edited-box" hidden>
    <h2>Edited: exported instead of the rewrite</h2><pre id="edited"></pre>
  </section>
  <section id="editor" hidden>
    <h2>Edit the rewrite</h2>
    <textarea id="edit-text" rows="16" spellcheck="false"></textarea>
    <p><button id="save">Save edit <kbd>Ctrl</kbd>+<kbd>Enter</kbd></button>
      <button id="cancel">Cancel <kbd>Esc</kbd></button></p>
  </section>
  <h2>Filters (recomputed here)</h2>
  <table id="checks"><thead><tr></tr></thead><tbody></tbody></table>
  <p id="file-filters" class="muted" hidden></p>
  <h2>History</h2>
  <ol id="history"></ol>
</main>
<div id="actions">
  <button id="accept">Accept <kbd>a</kbd></button>
  <button id="reject">Reject <kbd>r</kbd></button>
  <button id="edit">Edit <kbd>e</kbd></button>
  <button id="prev">Previous <kbd>k</kbd></button>
  <button id="next">Next <kbd>j</kbd></button>
  <button id="undecided">Next undecided <kbd>u</kbd></button>
  <button id="export">Export accepted</button>
  <a id="download" href="api/export">download</a>
  <span id="status" role="status"></span>
</div>
<script nonce="__NONCE__">
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const state = { total: 0, view: null, editing: false, checks: {}, queue: Promise.resolve() };

async function api(method, path, body) {
  const headers = {};
  if (token) headers["Authorization"] = "Bearer " + token;
  const init = { method, headers };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body || {});
  }
  const res = await fetch(path, init);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || res.status + " " + res.statusText);
  return data;
}

// Actions run one after another: a key pressed while a decision is being saved waits for it.
function enqueue(action) {
  state.queue = state.queue.then(action).catch(showError);
}

function showError(e) {
  $("error").textContent = String(e && e.message ? e.message : e);
  $("error").hidden = false;
}

function say(message) {
  $("status").textContent = message;
}

function showProgress(p) {
  $("bar").max = Math.max(p.total, 1);
  $("bar").value = p.decided;
  $("progress").textContent = p.decided + " / " + p.total + " decided · " + p.accepted +
    " accepted · " + p.edited + " edited · " + p.rejected + " rejected";
}

function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = value;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function renderChecks(view) {
  const columns = ["original", "rewritten", "edited"].filter((c) => view.checks[c]);
  const head = $("checks").tHead.rows[0];
  head.replaceChildren();
  for (const name of ["filter"].concat(columns)) {
    const th = document.createElement("th");
    th.textContent = name;
    head.appendChild(th);
  }
  const body = $("checks").tBodies[0];
  body.replaceChildren();
  for (const [name, meaning] of Object.entries(state.checks)) {
    const row = document.createElement("tr");
    row.title = meaning;
    cell(row, name);
    for (const c of columns) {
      const v = view.checks[c][name];
      cell(row, v === true ? "pass" : v === false ? "FAIL" : "n/a",
           v === true ? "pass" : v === false ? "fail" : "na");
    }
    body.appendChild(row);
  }
  const own = Object.entries(view.item.filters);
  $("file-filters").hidden = own.length === 0;
  $("file-filters").textContent = "the file's verdicts: " +
    own.map(([k, v]) => k + " " + (v ? "pass" : "FAIL")).join(", ");
}

function render(view) {
  state.view = view;
  state.total = view.total;
  $("error").hidden = true;
  closeEditor();
  history.replaceState(null, "", "#" + (view.n + 1));
  const item = view.item;
  const d = view.decision;
  $("position").textContent = "item " + (view.n + 1) + " of " + view.total;
  $("item-id").textContent = item.id;
  $("language").textContent = item.language;
  $("source").textContent = item.source;
  $("decision").textContent = d ? d.decision : "undecided";
  $("decision").className = "badge " + (d ? d.decision : "undecided");
  $("question").textContent = item.question;
  $("gold").textContent = item.gold === null ? "(none in this file)" : item.gold;
  $("original").textContent = item.original === null ?
    "(none: an SFT file has the response only)" : item.original;
  $("rewritten-title").textContent = item.original === null ? "Response" : "Rewritten";
  $("rewritten").textContent = item.rewritten;
  $("edited-box").hidden = !(d && d.decision === "edited");
  $("edited").textContent = d && d.decision === "edited" ? d.text : "";
  renderChecks(view);
  const list = $("history");
  list.replaceChildren();
  for (const h of view.history) {
    const li = document.createElement("li");
    li.textContent = new Date(h.at * 1000).toLocaleString() + ": " + h.decision;
    list.appendChild(li);
  }
  if (view.history.length === 0) {
    const li = document.createElement("li");
    li.textContent = "no decision yet";
    list.appendChild(li);
  }
  $("prev").disabled = view.n === 0;
  $("next").disabled = view.n + 1 >= view.total;
  $("undecided").disabled = view.next_undecided === null;
  showProgress(view.progress);
  $("main").hidden = false;
}

async function show(n) {
  render(await api("GET", "api/items/" + n));
}

function move(step) {
  return async () => {
    const n = state.view.n + step;
    if (n >= 0 && n < state.total) await show(n);
  };
}

async function nextUndecided() {
  if (state.view.next_undecided !== null) await show(state.view.next_undecided);
  else say("every item is decided");
}

function decide(decision) {
  return async () => {
    const view = state.view;
    const body = { key: view.item.key, decision };
    if (decision === "edited") body.text = $("edit-text").value;
    const saved = await api("POST", "api/items/" + view.n + "/decision", body);
    say("item " + (view.n + 1) + ": " + decision);
    if (view.n + 1 < saved.total) await show(view.n + 1);
    else render(saved);
  };
}

function openEditor() {
  const d = state.view.decision;
  $("edit-text").value = d && d.decision === "edited" ? d.text : state.view.item.rewritten;
  $("editor").hidden = false;
  state.editing = true;
  $("edit-text").focus();
}

function closeEditor() {
  $("editor").hidden = true;
  state.editing = false;
}

async function exportAccepted() {
  const r = await api("POST", "api/export");
  say("exported " + r.examples + " examples to " + r.path);
}

const KEYS = {
  a: decide("accepted"), r: decide("rejected"), e: async () => openEditor(),
  j: move(1), ArrowRight: move(1), k: move(-1), ArrowLeft: move(-1), u: nextUndecided,
};

document.addEventListener("keydown", (ev) => {
  const t = ev.target;
  const typing = t instanceof HTMLTextAreaElement || t instanceof HTMLInputElement ||
    (t instanceof HTMLElement && t.isContentEditable);
  if (typing) {  // the keys are text here; only the editor's own two keys act
    if (state.editing && ev.key === "Escape") {
      ev.preventDefault();
      closeEditor();
    } else if (state.editing && ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      enqueue(decide("edited"));
    }
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey || !(ev.key in KEYS) || !state.view) return;
  ev.preventDefault();  // keeps "e" from being typed into the editor it opens
  enqueue(KEYS[ev.key]);
});

const BUTTONS = {
  accept: KEYS.a, reject: KEYS.r, edit: KEYS.e, prev: KEYS.k, next: KEYS.j,
  undecided: KEYS.u, save: decide("edited"), cancel: async () => closeEditor(),
  export: exportAccepted,
};
for (const [id, action] of Object.entries(BUTTONS)) {
  $(id).addEventListener("click", () => enqueue(action));
}
if (token) $("download").href = "api/export?token=" + encodeURIComponent(token);

enqueue(async () => {
  const summary = await api("GET", "api/items");
  state.total = summary.total;
  state.checks = summary.checks;
  $("file").textContent = summary.file;
  const asked = parseInt(location.hash.slice(1), 10);
  const n = asked >= 1 && asked <= summary.total ? asked - 1 : (summary.first_undecided ?? 0);
  await show(n);
});
</script>
</body>
</html>
"""
