// The exported gallery's verdicts: kept in this browser (localStorage, one key per export, so a closed tab loses
// nothing) and downloaded as the CSV Period Eye imports ("periodeye-verdicts/1"). No network, no library.
(function () {
  "use strict";
  var meta = JSON.parse(document.getElementById("periodeye-meta").textContent);
  var KEY = "periodeye-verdicts:" + meta.export_id;
  var HEADER = ["format", "export_id", "run_id", "image_id", "content_hash", "verdict", "note", "reviewer", "time",
                "corrected_period"];
  var LABEL_WRONG = "label wrong";  // the one verdict that may name the period the expert believes is right
  var saved = load();

  function load() {
    try {
      var data = JSON.parse(window.localStorage.getItem(KEY) || "{}");
      return {reviewer: String(data.reviewer || ""), tiles: data.tiles || {}};
    } catch (err) {
      return {reviewer: "", tiles: {}};
    }
  }

  function store() {
    try {
      window.localStorage.setItem(KEY, JSON.stringify(saved));
    } catch (err) {
      document.getElementById("given").textContent = "This browser cannot keep verdicts: download them before closing.";
    }
  }

  function tileOf(el) {
    var fig = el.closest("figure.tile");
    return fig ? meta.tiles[Number(fig.getAttribute("data-n"))] : null;
  }

  function entry(t) {
    var id = t.image_id;
    if (!saved.tiles[id]) saved.tiles[id] = {content_hash: t.content_hash, verdict: "", note: "", time: ""};
    return saved.tiles[id];
  }

  function show(fig) {
    var got = saved.tiles[meta.tiles[Number(fig.getAttribute("data-n"))].image_id] || {};
    fig.querySelectorAll("button[data-verdict]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-verdict") === got.verdict));
    });
    fig.querySelector("input.note").value = got.note || "";
    var wrong = got.verdict === LABEL_WRONG;
    fig.querySelector("label.corrected").hidden = !wrong;
    fig.querySelector("select.corrected").value = wrong ? got.corrected_period || "" : "";
    fig.classList.toggle("judged", !!got.verdict);
  }

  function count() {
    var n = Object.keys(saved.tiles).filter(function (k) { return saved.tiles[k].verdict; }).length;
    document.getElementById("given").textContent = n + (n === 1 ? " verdict" : " verdicts") + " given";
    return n;
  }

  // OWASP: a cell a spreadsheet would read as a formula gets a leading quote; every cell is quoted.
  function cell(value) {
    var text = value == null ? "" : String(value);
    if (/^[=+\-@\t\r]/.test(text)) text = "'" + text;
    return '"' + text.replace(/"/g, '""') + '"';
  }

  function csv() {
    var lines = [HEADER.join(",")];
    meta.tiles.forEach(function (t) {
      var got = saved.tiles[t.image_id];
      if (!got || !got.verdict) return;
      lines.push([meta.format, meta.export_id, meta.run_id, t.image_id, t.content_hash, got.verdict, got.note,
                  saved.reviewer, got.time, got.verdict === LABEL_WRONG ? got.corrected_period || "" : ""
                 ].map(cell).join(","));
    });
    return lines.join("\r\n") + "\r\n";
  }

  function slug(text) {
    return String(text).replace(/[^A-Za-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40) || "run";
  }

  document.querySelectorAll("figure.tile").forEach(show);
  var reviewer = document.getElementById("reviewer");
  reviewer.value = saved.reviewer;
  count();

  reviewer.addEventListener("input", function () {
    saved.reviewer = reviewer.value.trim();
    store();
  });

  document.addEventListener("click", function (ev) {
    var target = ev.target;
    var thumb = target.closest("button.thumb");
    if (thumb) {
      var maps = thumb.closest("figure.tile").querySelector("details.maps");
      if (maps) maps.open = !maps.open;
      return;
    }
    var button = target.closest("button[data-verdict]");
    if (!button) return;
    var t = tileOf(button);
    var got = entry(t);
    var chosen = button.getAttribute("data-verdict");
    got.verdict = got.verdict === chosen ? "" : chosen;  // a second press takes the verdict back
    got.time = new Date().toISOString();
    store();
    show(button.closest("figure.tile"));
    count();
  });

  document.addEventListener("change", function (ev) {
    var select = ev.target;
    if (!select.classList || !select.classList.contains("corrected")) return;
    var got = entry(tileOf(select));
    got.corrected_period = select.value;
    got.time = new Date().toISOString();
    store();
  });

  document.addEventListener("input", function (ev) {
    var input = ev.target;
    if (!input.classList || !input.classList.contains("note")) return;
    var got = entry(tileOf(input));
    got.note = input.value;
    got.time = new Date().toISOString();
    store();
  });

  document.getElementById("download").addEventListener("click", function () {
    if (!count()) {
      document.getElementById("given").textContent = "No verdicts yet: press a verdict under a painting first.";
      return;
    }
    if (!saved.reviewer) {
      reviewer.focus();
      document.getElementById("given").textContent = "Type your name first, so Period Eye knows whose verdicts these are.";
      return;
    }
    var link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([csv()], {type: "text/csv;charset=utf-8"}));
    link.download = "period-eye-verdicts_" + slug(meta.run_id) + "_" + slug(saved.reviewer) + "_" +
      new Date().toISOString().slice(0, 10) + ".csv";
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); count(); }, 1000);
  });
})();
