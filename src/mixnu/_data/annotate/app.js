// mixnu annotation page. Model output is untrusted: every text goes into the page through
// textContent / createTextNode, never innerHTML. No inline scripts or styles (see the server's CSP).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  // Invisible or control characters (zero-width spaces, bidi marks, BOM ...) are shown as
  // visible markers so annotators can see the noise the fluency rubric asks about.
  const INVISIBLE = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u00AD\u200B-\u200F\u2028-\u202E\u2060-\u2064\uFEFF]/g;
  const NOTE_LABELS = { human: "Notes for annotators", confusable: "Confusable word", meaning: "Meaning" };

  const st = {
    annotator: null, total: 0, position: 0, item: null, criteria: [], rubric: {}, languageNote: "",
    focus: 0, firstOpen: 0, busy: false, lastSave: 0,
  };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function appendText(node, text) {
    let last = 0;
    for (const m of text.matchAll(INVISIBLE)) {
      if (m.index > last) node.appendChild(document.createTextNode(text.slice(last, m.index)));
      const code = "U+" + m[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
      const mark = el("span", "invisible", code);
      mark.title = "invisible character " + code;
      node.appendChild(mark);
      last = m.index + m[0].length;
    }
    if (last < text.length) node.appendChild(document.createTextNode(text.slice(last)));
  }

  function showStatus(text) {
    $("error").hidden = true;
    $("status").textContent = text;
  }

  function showError(text) {
    $("status").textContent = "";
    $("error").textContent = text;
    $("error").hidden = false;
  }

  async function api(method, path, body) {
    let resp;
    try {
      resp = await fetch(path, {
        method, headers: body ? { "Content-Type": "application/json" } : {},
        body: body ? JSON.stringify(body) : undefined, cache: "no-store",
      });
    } catch (e) {
      throw new Error("the server is unreachable (is `mixnu eval annotate` still running?); answers shown as saved are safe");
    }
    let data = {};
    try { data = await resp.json(); } catch (e) { data = {}; }
    if (!resp.ok) throw new Error(data.error || ("HTTP " + resp.status));
    return data;
  }

  function q(params) {
    return "?" + new URLSearchParams({ annotator: st.annotator, ...params }).toString();
  }

  function cells() {
    const out = [];
    for (const r of st.item.responses) for (const c of st.criteria) out.push([r.letter, c]);
    return out;
  }

  function isComplete() {
    return cells().every(([l, c]) => (st.item.scores[l] || {})[c] !== undefined);
  }

  function setProgress(p) {
    st.total = p.total;
    st.firstOpen = p.first_open;
    $("progress").max = Math.max(1, p.total);
    $("progress").value = p.done;
    $("progress-text").textContent = `${p.done} / ${p.total} done` + (p.skipped ? ` · ${p.skipped} skipped` : "");
  }

  function show(section) {
    for (const id of ["login", "annotate", "finished"]) $(id).hidden = id !== section;
  }

  function renderRubric() {
    const [, crit] = cells()[st.focus] || [null, st.criteria[0]];
    $("rubric-title").textContent = crit.charAt(0).toUpperCase() + crit.slice(1) + " rubric";
    const list = $("rubric-list");
    list.replaceChildren();
    for (let v = 5; v >= 1; v--) {
      const li = el("li");
      li.appendChild(el("span", "lvl", v));
      li.appendChild(el("span", null, st.rubric[crit][v - 1]));
      list.appendChild(li);
    }
    $("rubric-note").textContent = crit === "fluency" ? st.languageNote : "";
  }

  function renderFocus() {
    const all = cells();
    st.focus = Math.max(0, Math.min(st.focus, all.length - 1));
    document.querySelectorAll(".score-row").forEach((row, i) => row.classList.toggle("focused", i === st.focus));
    renderRubric();
  }

  function renderScores() {
    document.querySelectorAll(".score-row").forEach((row) => {
      const v = (st.item.scores[row.dataset.letter] || {})[row.dataset.criterion];
      row.querySelectorAll("button").forEach((b) => {
        const on = Number(b.dataset.value) === v;
        b.classList.toggle("selected", on);
        b.setAttribute("aria-pressed", on ? "true" : "false");
      });
      row.classList.toggle("scored", v !== undefined);
    });
    document.querySelectorAll(".response").forEach((card) => {
      const s = st.item.scores[card.dataset.letter] || {};
      card.classList.toggle("complete", st.criteria.every((c) => s[c] !== undefined));
    });
    $("next").classList.toggle("ready", isComplete());
  }

  function renderItem() {
    const it = st.item;
    $("position").textContent = `Item ${it.position + 1} of ${st.total}`;
    $("category").textContent = it.category;
    $("attribute").textContent = it.attribute.replace("_", " ");
    $("attribute").hidden = it.attribute === it.category;
    $("item-id").textContent = it.item;
    $("skipped-flag").hidden = !it.skipped;
    const prompt = $("prompt");
    prompt.replaceChildren();
    appendText(prompt, it.prompt);
    const notes = $("notes");
    notes.replaceChildren();
    for (const [key, value] of it.notes) {
      notes.appendChild(el("dt", null, NOTE_LABELS[key] || key));
      const dd = el("dd");
      appendText(dd, value);
      notes.appendChild(dd);
    }
    const box = $("responses");
    box.replaceChildren();
    let index = 0;
    for (const r of it.responses) {
      const card = el("section", "card response");
      card.dataset.letter = r.letter;
      const head = el("div", "response-head");
      head.appendChild(el("span", "letter", r.letter));
      head.appendChild(el("span", "muted small", `${[...r.text].length} characters`));
      card.appendChild(head);
      const text = el("div", "text response-text");
      text.dataset.letter = r.letter;
      if (r.text.trim() === "") text.appendChild(el("span", "invisible", "(empty response)"));
      else appendText(text, r.text);
      card.appendChild(text);
      const grid = el("div", "scores");
      for (const c of st.criteria) {
        const row = el("div", "score-row");
        row.dataset.letter = r.letter;
        row.dataset.criterion = c;
        row.dataset.index = String(index++);
        row.appendChild(el("span", "crit", c));
        const buttons = el("span", "buttons");
        for (let v = 1; v <= 5; v++) {
          const b = el("button", "score", v);
          b.type = "button";
          b.dataset.value = String(v);
          b.title = `${c} ${v}: ${st.rubric[c][v - 1]}`;
          b.setAttribute("aria-label", `${r.letter} ${c} ${v}`);
          b.addEventListener("click", () => {
            st.focus = Number(row.dataset.index);
            give(r.letter, c, v);
          });
          buttons.appendChild(b);
        }
        row.appendChild(buttons);
        row.addEventListener("click", (e) => {
          if (e.target === row || e.target.classList.contains("crit")) { st.focus = Number(row.dataset.index); renderFocus(); }
        });
        grid.appendChild(row);
      }
      card.appendChild(grid);
      box.appendChild(card);
    }
    // Start on the first unscored row (all scored: the first row).
    const all = cells();
    const open = all.findIndex(([l, c]) => (it.scores[l] || {})[c] === undefined);
    st.focus = open < 0 ? 0 : open;
    renderScores();
    renderFocus();
    show("annotate");
    const row = document.querySelectorAll(".score-row")[st.focus];
    if (row && open > 0) row.scrollIntoView({ block: "nearest" });
    else window.scrollTo(0, 0);
  }

  function renderFinished() {
    $("finished-text").textContent = `${$("progress-text").textContent}. ` +
      (st.firstOpen < st.total ? `Item ${st.firstOpen + 1} is the first one not finished.` : "Every item is scored. Thank you!");
    $("finished-open").hidden = st.firstOpen >= st.total;
    show("finished");
  }

  async function load(position) {
    st.position = position;
    if (position >= st.total) { st.item = null; renderFinished(); return; }
    const data = await api("GET", "/api/item" + q({ position }));
    st.item = data;
    setProgress(data);
    renderItem();
  }

  async function go(position, skip) {
    if (st.busy) return;
    st.busy = true;
    try {
      const r = await api("POST", "/api/navigate", { annotator: st.annotator, position, skip: skip || null });
      setProgress(r);
      await load(position);
      showStatus(skip ? "Skipped; you can come back to it later." : "");
    } catch (e) {
      showError("Could not move: " + e.message);
    } finally {
      st.busy = false;
    }
  }

  async function give(letter, criterion, value) {
    if (!Number.isInteger(value) || value < 1 || value > 5) {
      showError(`${value} is not a score: scores are 1 to 5.`);
      return;
    }
    const row = document.querySelector(`.score-row[data-letter="${letter}"][data-criterion="${criterion}"]`);
    row.classList.add("saving");
    // Move on at once, so fast typing scores consecutive rows even before the server answers.
    const all = cells();
    const index = Number(row.dataset.index);
    if (st.focus === index && index < all.length - 1) { st.focus = index + 1; renderFocus(); }
    const item = st.item;
    const seq = ++st.lastSave;  // saves may answer out of order: only the newest one may set the status
    try {
      const r = await api("POST", "/api/score", { annotator: st.annotator, item: st.item.item, letter, criterion, score: value });
      (item.scores[letter] = item.scores[letter] || {})[criterion] = value;
      setProgress(r);
      if (item !== st.item) return;  // the annotator moved on meanwhile; the score is saved all the same
      renderScores();
      const complete = r.item_complete || isComplete();
      if (complete) { st.item.skipped = false; $("skipped-flag").hidden = true; }
      if (seq !== st.lastSave && !complete) return;  // an older save answered late; a newer one owns the status
      showStatus(complete ? `Saved ${letter} · ${criterion} = ${value}. Item complete: press Enter for the next one.`
        : `Saved ${letter} · ${criterion} = ${value}`);
    } catch (e) {
      showError(`Not saved (${letter} · ${criterion}): ${e.message}`);
      if (item === st.item) { st.focus = index; renderFocus(); }
    } finally {
      row.classList.remove("saving");
    }
  }

  function next() {
    if (!st.item) return;
    if (!isComplete()) { showError("Score every response on all three criteria, or press S to skip this item."); return; }
    go(st.position + 1);
  }

  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target && ["INPUT", "TEXTAREA", "SELECT"].includes(e.target.tagName)) return;
    if ($("annotate").hidden) {
      if (!$("finished").hidden && ["b", "B", "ArrowLeft"].includes(e.key)) { e.preventDefault(); go(st.total - 1); }
      return;
    }
    const k = e.key;
    if (/^[1-5]$/.test(k)) {
      const [l, c] = cells()[st.focus];
      give(l, c, Number(k));
    } else if (/^[06-9]$/.test(k)) {
      showError(`${k} is not a score: scores are 1 to 5.`);
    } else if (k === "ArrowDown" || k === "j" || k === "J") {
      st.focus += 1; renderFocus();
    } else if (k === "ArrowUp" || k === "k" || k === "K") {
      st.focus -= 1; renderFocus();
    } else if (k === "Enter" || k === "ArrowRight" || k === "n" || k === "N") {
      next();
    } else if (k === "ArrowLeft" || k === "b" || k === "B" || k === "p" || k === "P") {
      if (st.position > 0) go(st.position - 1);
    } else if (k === "s" || k === "S") {
      go(st.position + 1, st.item.item);
    } else {
      return;
    }
    e.preventDefault();
  }

  async function start() {
    const name = new URLSearchParams(location.search).get("annotator");
    if (!name || !name.trim()) {
      show("login");
      $("login-name").focus();
      return;
    }
    st.annotator = name.trim();
    try {
      const s = await api("GET", "/api/state" + q({}));
      st.annotator = s.annotator;
      st.criteria = s.criteria;
      st.rubric = s.rubric;
      st.languageNote = s.language_note;
      $("who").textContent = "Annotator: " + s.annotator;
      setProgress(s);
      await load(s.cursor);
    } catch (e) {
      showError("Could not open the sample: " + e.message);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      location.search = "?" + new URLSearchParams({ annotator: $("login-name").value.trim() }).toString();
    });
    $("next").addEventListener("click", next);
    $("back").addEventListener("click", () => { if (st.position > 0) go(st.position - 1); });
    $("skip").addEventListener("click", () => go(st.position + 1, st.item.item));
    $("finished-back").addEventListener("click", () => go(st.total - 1));
    $("finished-open").addEventListener("click", () => go(st.firstOpen));
    document.addEventListener("keydown", onKey);
    start();
  });
})();
