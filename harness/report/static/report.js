// Builds the case list of the XAI report from the JSON data island.
// Data are only ever written with textContent / attributes, never parsed as HTML, so
// user-written strings (case ids, descriptions, messages) cannot inject markup.
(function () {
  "use strict";

  var DATA = JSON.parse(document.getElementById("xai-data").textContent);
  // Items and checks arrive as lists in the order of DATA.item_fields / check_fields.
  function unpack(fields, row) {
    var out = {};
    for (var i = 0; i < fields.length; i += 1) { out[fields[i]] = row[i]; }
    return out;
  }
  if (DATA.item_fields) {
    DATA.cases.forEach(function (c) {
      if (c.source && c.source.indexOf("data:") !== 0) { c.source = (DATA.assets || "") + c.source; }
      c.items = c.items.map(function (row) {
        var it = unpack(DATA.item_fields, row);
        it.checks = it.checks.map(function (ch) { return unpack(DATA.check_fields, ch); });
        Object.keys(it.images).forEach(function (k) {
          var url = it.images[k];
          if (url.indexOf("data:") !== 0) { it.images[k] = (DATA.assets || "") + url; }
        });
        return it;
      });
    });
  }
  var VERDICT_LABEL = {};
  DATA.verdicts.forEach(function (v) { VERDICT_LABEL[v.id] = v.label; });
  var MARKS = [
    ["confirmed", "confirmed"],
    ["false_alarm", "false alarm"],
    ["unclear", "unclear"]
  ];
  var MARK_LABEL = { confirmed: "confirmed", false_alarm: "false alarm", unclear: "unclear" };
  var IMAGE_LABEL = { input: "input", annotated: "input + object", heatmap: "relevance", overlay: "overlay",
    heatmap_predicted: "relevance for the predicted class", source: "source image" };

  // ---- items -------------------------------------------------------------------
  var ITEMS = [];
  DATA.cases.forEach(function (c, ci) {
    c.index = ci;
    c.items.forEach(function (it) {
      it.case = c;
      // The case's source image is one more picture of each item (the lightbox offers it).
      if (c.source) { it.images.source = c.source; }
      it.index = ITEMS.length;
      // it.review (from the payload): model failures only; errors and xfails are not the expert's to judge.
      if (!it.group) { it.group = it.verdict; }
      it.haystack = [c.case_id, c.description, c.label, c.location, c.model, c.explainer,
        it.variant, it.verdict, it.predicted, it.message, it.nodeid].join("\n").toLowerCase();
      ITEMS.push(it);
    });
  });
  var FAILED = ITEMS.filter(function (it) { return it.review; });

  // Variants of a case on which the run's explainers reach different verdicts (same model).
  DATA.cases.forEach(function (c) {
    var variants = {};
    (c.disagree || []).forEach(function (d) { variants[d[0]] = true; });
    c.items.forEach(function (it) { it.disagree = variants[it.variant] === true; });
  });

  // The same case and variant under several models or explainers: did the verdict change?
  function sameCase(it) { return it.case.suite + "\u0000" + it.case.case_id; }
  var ACROSS = {};
  ITEMS.forEach(function (it) {
    var k = sameCase(it) + "\u0000" + it.variant;
    (ACROSS[k] = ACROSS[k] || []).push(it);
  });
  ITEMS.forEach(function (it) {
    var peers = ACROSS[sameCase(it) + "\u0000" + it.variant];
    var groups = {};
    peers.forEach(function (p) { groups[p.group] = true; });
    it.changed = Object.keys(groups).length > 1;
  });

  // ---- review storage ------------------------------------------------------------
  // v2: reviews keyed by the item's fingerprint (what was judged), not by its place in a run.
  var STORE_KEY = "xai-report:v2:" + DATA.namespace;
  var reviews = {};
  var storageOk = true;
  try {
    reviews = JSON.parse(window.localStorage.getItem(STORE_KEY) || "{}") || {};
    window.localStorage.setItem(STORE_KEY + ":probe", "1");
    window.localStorage.removeItem(STORE_KEY + ":probe");
  } catch (err) {
    // file:// pages in some browsers get no storage; keep marks in memory and warn.
    storageOk = false;
    reviews = {};
  }
  if (!storageOk) { document.getElementById("storage-warning").hidden = false; }

  function saveReviews() {
    if (!storageOk) { return; }
    try {
      window.localStorage.setItem(STORE_KEY, JSON.stringify(reviews));
    } catch (err) {
      storageOk = false;
      document.getElementById("storage-warning").hidden = false;
    }
  }

  function setReview(item, mark, comment) {
    if (!mark && !comment) {
      delete reviews[item.fingerprint];
    } else {
      reviews[item.fingerprint] = {
        mark: mark || "", comment: comment || "", verdict: item.verdict,
        run: DATA.run, at: new Date().toISOString()
      };
    }
    saveReviews();
    updateReviewStatus();
  }

  function updateReviewStatus() {
    var counts = { confirmed: 0, false_alarm: 0, unclear: 0 };
    var done = 0;
    FAILED.forEach(function (it) {
      var r = reviews[it.fingerprint];
      if (r && r.mark) { done += 1; counts[r.mark] = (counts[r.mark] || 0) + 1; }
    });
    var box = document.getElementById("review-status");
    box.textContent = "";
    if (!FAILED.length) { box.textContent = "Nothing to review: no model failures."; return; }
    box.append("Reviewed ");
    box.append(el("strong", null, String(done)));
    box.append(" of " + FAILED.length + " model failures (" +
      counts.confirmed + " confirmed, " + counts.false_alarm + " false alarm, " + counts.unclear + " unclear)");
  }

  // ---- DOM helpers ----------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) { return; }
        if (name === "class") { node.className = value; } else { node.setAttribute(name, value === true ? "" : String(value)); }
      });
    }
    if (children !== undefined && children !== null) {
      (Array.isArray(children) ? children : [children]).forEach(function (child) {
        if (child === null || child === undefined || child === false) { return; }
        node.append(typeof child === "string" ? document.createTextNode(child) : child);
      });
    }
    return node;
  }

  function fmt(value) {
    if (value === null || value === undefined) { return "—"; }
    if (typeof value === "boolean") { return value ? "yes" : "no"; }
    if (typeof value === "string") { return value; }
    if (Math.abs(value) >= 1000) { return value.toFixed(0); }
    if (value === 0) { return "0"; }
    return String(Number(value.toPrecision(3)));
  }

  function pct(value) {
    return value === null || value === undefined ? "" : " (p = " + Number(value.toFixed(3)) + ")";
  }

  function safeUrl(url) {
    // Only our own relative asset paths and inlined images may become a src.
    if (typeof url !== "string" || !url) { return null; }
    if (url.indexOf("data:image/") === 0) { return url; }
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(url) || url.indexOf("//") === 0) { return null; }
    return url;
  }

  function badge(verdict) {
    return el("span", { "class": "badge v-" + verdict }, VERDICT_LABEL[verdict] || verdict.replace(/_/g, " "));
  }

  function variantName(v) { return v ? v.replace(/_/g, " ") : "item"; }

  // ---- state and filtering -----------------------------------------------------------
  var form = document.getElementById("toolbar");
  var state = { page: 1 };

  var FIELDS = ["verdict", "label", "variant", "model", "review", "q", "sort", "view", "size", "zoom", "changed", "disagree"];

  function fieldValue(name) {
    var f = form.elements[name];
    return f.type === "checkbox" ? (f.checked ? "1" : "") : f.value;
  }

  function readForm() {
    FIELDS.forEach(function (name) { state[name] = fieldValue(name); });
    state.q = state.q.trim().toLowerCase();
  }

  // ---- filter state in the URL (#verdict=...&page=2), so a view can be bookmarked or sent.
  var DEFAULTS = {};
  FIELDS.forEach(function (name) { DEFAULTS[name] = fieldValue(name); });

  function stateHash() {
    var params = new URLSearchParams();
    FIELDS.forEach(function (name) {
      var value = fieldValue(name);
      if (value !== DEFAULTS[name]) { params.set(name, value); }
    });
    if (state.page > 1) { params.set("page", String(state.page)); }
    var text = params.toString();
    return text ? "#" + text : "";
  }

  function writeHash() {
    var hash = stateHash();
    if (hash === (window.location.hash === "#" ? "" : window.location.hash)) { return; }
    try {
      window.history.replaceState(null, "", hash || window.location.pathname + window.location.search);
    } catch (err) {
      window.location.hash = hash;
    }
  }

  function readHash() {
    var params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    FIELDS.forEach(function (name) {
      var f = form.elements[name];
      var value = params.has(name) ? params.get(name) : DEFAULTS[name];
      if (f.type === "checkbox") { f.checked = value === "1"; return; }
      f.value = value;
      // A value the page does not offer (an old link) falls back to the default.
      if (f.tagName === "SELECT" && f.value !== value) { f.value = DEFAULTS[name]; }
    });
    state.page = parseInt(params.get("page") || "1", 10) || 1;
  }

  function matches(it) {
    var c = it.case;
    if (state.verdict === "!passed") { if (it.rank > 1) { return false; } }
    else if (state.verdict && it.group !== state.verdict) { return false; }
    if (state.label && (it.label || "(unknown)") !== state.label) { return false; }
    if (state.variant && (it.variant || "(unknown)") !== state.variant) { return false; }
    if (state.model && (it.model || "(unknown)") !== state.model) { return false; }
    if (state.review) {
      var r = reviews[it.fingerprint];
      var mark = r && r.mark ? r.mark : "";
      if (state.review === "none") { if (!it.review || mark) { return false; } }
      else if (mark !== state.review) { return false; }
    }
    if (state.q && it.haystack.indexOf(state.q) < 0) { return false; }
    if (state.changed && !it.changed) { return false; }
    if (state.disagree && !it.disagree) { return false; }
    return true;
  }

  function units() {
    var byCase = [];
    var lastCase = null;
    var list = [];
    if (state.view === "compare") { return sortUnits(compareUnits()); }
    ITEMS.forEach(function (it) {
      if (!matches(it)) { return; }
      if (state.view === "items") {
        list.push({ case: it.case, items: [it], index: it.index });
        return;
      }
      if (it.case !== lastCase) {
        lastCase = it.case;
        byCase = { case: it.case, items: [], index: it.case.index };
        list.push(byCase);
      }
      byCase.items.push(it);
    });
    if (state.view !== "items") {
      // A filter that hides the original would hide what the failing variant is
      // compared with: it stays beside it, marked as context.
      list.forEach(function (u) {
        if (u.items.some(function (it) { return it.variant === "original"; })) { return; }
        var original = u.case.items.filter(function (it) { return it.variant === "original"; })[0];
        if (original) { u.items.unshift(original); u.context = original; }
      });
    }
    return sortUnits(list);
  }

  // Compare view: one unit per case (suite and id) across its models and explainers.
  function compareUnits() {
    var byName = {};
    var list = [];
    ITEMS.forEach(function (it) {
      if (!matches(it)) { return; }
      var k = sameCase(it);
      if (!byName[k]) {
        byName[k] = { case: it.case, items: [], index: it.case.index, compare: true };
        list.push(byName[k]);
      }
      byName[k].items.push(it);
    });
    return list;
  }

  function sortUnits(list) {
    var sort = state.sort || "rank";
    var cmp;
    if (sort === "rank") {
      cmp = function (a, b) { return unitRank(a) - unitRank(b) || a.index - b.index; };
    } else if (sort === "location") {
      cmp = function (a, b) {
        return a.case.suite.localeCompare(b.case.suite) || (a.case.line || 0) - (b.case.line || 0) ||
          a.case.case_id.localeCompare(b.case.case_id) || a.index - b.index;
      };
    } else if (sort === "case_id") {
      cmp = function (a, b) { return a.case.case_id.localeCompare(b.case.case_id) || a.index - b.index; };
    } else {
      var parts = sort.split(":");
      var metric = parts[0];
      var desc = parts[1] === "desc";
      var key = function (u) {
        // A case sorts by its most extreme visible variant in the chosen direction.
        var best = null;
        u.items.forEach(function (it) {
          var v = it[metric];
          if (typeof v !== "number") { return; }
          if (best === null || (desc ? v > best : v < best)) { best = v; }
        });
        return best;
      };
      list.forEach(function (u) { u.sortKey = key(u); });
      cmp = function (a, b) {
        if (a.sortKey === null || b.sortKey === null) {
          return (a.sortKey === null) - (b.sortKey === null) || a.index - b.index;
        }
        return (desc ? b.sortKey - a.sortKey : a.sortKey - b.sortKey) || a.index - b.index;
      };
    }
    return list.slice().sort(cmp);
  }

  function unitRank(u) {
    var rank = 3;
    u.items.forEach(function (it) { rank = Math.min(rank, it.rank); });
    return rank;
  }

  // ---- rendering ------------------------------------------------------------------------
  function image(it, kind, alt) {
    var url = safeUrl(it.images[kind]);
    if (!url && kind === "annotated") { url = safeUrl(it.images.input); }
    if (!url) { return el("div", { "class": "missing" }, "no image"); }
    var img = el("img", { src: url, alt: alt, loading: "lazy", decoding: "async" });
    img.addEventListener("load", function () {
      // Small model inputs blown up should show their pixels, not a blur.
      if (img.naturalWidth && img.naturalWidth < img.clientWidth) { img.classList.add("upscaled"); }
    });
    var button = el("button", { type: "button", "class": "thumb", title: "Enlarge" }, img);
    button.addEventListener("click", function () { openLightbox(it, kind); });
    return button;
  }

  function colourBar(scale) {
    var s = typeof scale === "number" ? fmt(scale) : "max";
    return el("div", { "class": "cbar", title: "Relevance scale: blue negative, white zero, red positive" }, [
      el("div", { "class": "cbar-ramp", "aria-hidden": "true" }),
      el("div", { "class": "cbar-ticks" }, [el("span", null, "−" + s), el("span", null, "0"), el("span", null, "+" + s)])
    ]);
  }

  function hasCaseScale(c) { return typeof c.heatmap_scale === "number"; }

  // The case's one colour scale, stated once: its maps compare by colour.
  function caseScale(c) {
    if (!hasCaseScale(c)) { return null; }
    var what = c.heatmap_maps === 1 ? "the map" : "all " + c.heatmap_maps + " maps";
    return el("div", { "class": "case-scale" }, [
      el("span", { "class": "case-scale-title" }, "Relevance colour scale"),
      colourBar(c.heatmap_scale),
      el("span", { "class": "case-scale-note" },
        "shared by " + what + " of this case: ±" + fmt(c.heatmap_scale) + " is the " + c.heatmap_percentile +
        "th percentile of |relevance| over them; stronger values saturate")
    ]);
  }

  function facts(it) {
    var c = it.case;
    var rows = [];
    var label = it.label || c.label;
    rows.push(["expected", (label || "—") + pct(it.p_label)]);
    rows.push(["predicted", (it.predicted === null ? "—" : it.predicted) + pct(it.p_predicted)]);
    if (it.variant !== "original" && it.original_predicted !== null && it.original_predicted !== undefined) {
      rows.push(["unmodified image", it.original_predicted]);
    }
    if (it.pointing_game !== null && it.pointing_game !== undefined) {
      rows.push(["peak on object", it.pointing_game ? "yes" : "no"]);
    }
    var dl = el("dl", { "class": "facts" });
    rows.forEach(function (r) { dl.append(el("dt", null, r[0]), el("dd", null, r[1])); });
    return dl;
  }

  function checksTable(it) {
    if (!it.checks.length) { return null; }
    var body = el("tbody");
    it.checks.forEach(function (ch) {
      var result = ch.passed === null ? "?" : (ch.passed ? "✓ met" : "✗ not met");
      body.append(el("tr", null, [
        el("td", { title: ch.metric }, ch.name || ch.metric),
        el("td", { "class": "num" }, fmt(ch.value)),
        el("td", { title: ch.source ? "threshold set at: " + ch.source : null }, [(ch.op || "") + " " + fmt(ch.threshold),
          ch.source ? el("span", { "class": "source" }, ch.source) : null]),
        el("td", { "class": ch.passed === null ? "" : (ch.passed ? "ok" : "bad") }, result)
      ]));
    });
    return el("table", { "class": "checks" }, [
      el("thead", null, el("tr", null, [
        el("th", { scope: "col" }, "check"), el("th", { scope: "col", "class": "num" }, "value"),
        el("th", { scope: "col" }, "required"), el("th", { scope: "col" }, "result")
      ])),
      body
    ]);
  }

  var reviewSeq = 0;
  function reviewBox(it) {
    var stored = reviews[it.fingerprint] || {};
    var box = el("div", { "class": "review" + (stored.mark ? " done" : "") });
    var group = "review-" + (reviewSeq += 1);
    var fieldset = el("fieldset", null, el("legend", null, "Your review of this verdict"));
    var comment = el("textarea", { rows: 2, placeholder: "Comment (optional)", "aria-label": "Comment on " + it.key });
    comment.value = stored.comment || "";
    MARKS.forEach(function (m) {
      var radio = el("input", { type: "radio", name: group, value: m[0], "data-mark": m[0] });
      radio.checked = stored.mark === m[0];
      radio.addEventListener("change", function () {
        setReview(it, m[0], comment.value);
        box.classList.add("done");
      });
      fieldset.append(el("label", null, [radio, m[1]]));
    });
    var clear = el("button", { type: "button", "class": "link" }, "clear");
    clear.addEventListener("click", function () {
      fieldset.querySelectorAll("input").forEach(function (r) { r.checked = false; });
      comment.value = "";
      setReview(it, "", "");
      box.classList.remove("done");
    });
    fieldset.append(clear);
    comment.addEventListener("input", function () {
      var current = reviews[it.fingerprint] || {};
      setReview(it, current.mark || "", comment.value);
    });
    box.append(fieldset, comment);
    if (stored.mark && stored.run && stored.run !== DATA.run) {
      // Same fingerprint: same case, variant, model, explainer, verdict and input image.
      box.append(el("p", { "class": "kept" }, "Kept from an earlier run: the verdict and the image are unchanged."));
    }
    return box;
  }

  function variantBlock(it, context) {
    var c = it.case;
    var name = variantName(it.variant);
    var head = el("div", { "class": "variant-head" }, [el("span", { "class": "variant-name" }, name), badge(it.group),
      it.group !== it.verdict ? badge(it.verdict) : null]);
    var who = c.case_id + ", " + name;
    var heat = el("figure", null, [image(it, "heatmap", "Relevance map of " + who),
      safeUrl(it.images.heatmap) && !hasCaseScale(c) ? colourBar(it.heatmap_scale) : null,
      el("figcaption", null, it.heatmap_class ? "relevance for " + it.heatmap_class : "relevance")]);
    var images = el("div", { "class": "images" }, [
      el("figure", null, [image(it, "annotated", "Input with annotated object, " + who), el("figcaption", null, "input + object")]),
      heat,
      el("figure", null, [image(it, "overlay", "Relevance over input, " + who), el("figcaption", null, "overlay")])
    ]);
    var parts = [head, images, facts(it), checksTable(it)];
    if (it.line !== null && it.line !== c.line) {
      parts.push(el("p", { "class": "case-note" }, ["variant defined in ", el("code", null, c.suite + ":" + it.line)]));
    }
    if (it.message) { parts.push(el("p", { "class": "sentence" }, it.message)); }
    if (it.longrepr) {
      parts.push(el("details", { "class": "trace" }, [el("summary", null, "error details"), el("pre", null, it.longrepr)]));
    }
    if (it.review && !context) { parts.push(reviewBox(it)); }
    else if (!context && it.fingerprint) {
      // Any other item (a pass, an error, an xfail) can be flagged with the same marks.
      var flagged = reviews[it.fingerprint];
      var flag = el("details", { "class": "flag" }, [el("summary", null, flagged && flagged.mark ? "flagged: " + MARK_LABEL[flagged.mark] : "flag this item"), reviewBox(it)]);
      parts.push(flag);
    }
    if (context) { parts.unshift(el("p", { "class": "context-note" }, "shown for comparison; the filters hide it")); }
    return el("section", {
      "class": "variant" + (it.review ? " fail" : "") + (context ? " context" : ""),
      "data-item-key": it.key, "data-verdict": it.verdict, "data-group": it.group, "data-variant": it.variant,
      "aria-label": name + ": " + (VERDICT_LABEL[it.group] || it.group)
    }, parts);
  }

  function caseStatus(c) {
    var bad = c.items.filter(function (it) { return it.review; }).length;
    var errors = c.items.filter(function (it) { return it.group === "error"; }).length;
    var text = bad ? bad + " of " + c.items.length + " failed" : "none of " + c.items.length + " failed";
    if (errors) { text += ", " + errors + " could not be evaluated"; }
    return el("span", { "class": "case-status" }, text);
  }

  function caseCard(u) {
    var c = u.case;
    var title = c.case_id || (u.items[0] && u.items[0].nodeid) || "(unnamed case)";
    var factsLine = el("div", { "class": "case-facts" }, [
      c.label ? el("span", null, ["class ", el("b", null, c.label)]) : null,
      c.model ? el("span", null, ["model ", el("b", null, c.model)]) : null,
      c.explainer ? el("span", null, ["explainer ", el("b", null, c.explainer)]) : null,
      c.device ? el("span", null, ["on ", el("b", null, c.device)]) : null,
      c.location ? el("span", null, ["defined in ", el("code", null, c.location)]) : null,
      sourceButton(u)
    ]);
    var card = el("article", { "class": "case rank-" + unitRank(u), "data-case-key": c.key }, [
      el("div", { "class": "case-head" }, [el("h3", { "class": "case-title" }, title), caseStatus(c), factsLine])
    ]);
    if (c.description) { card.append(el("p", { "class": "case-desc" }, c.description)); }
    (c.disagree || []).forEach(function (d) {
      var said = d[1].map(function (pair) {
        return pair[0] + " says " + (VERDICT_LABEL[pair[1]] || pair[1].replace(/_/g, " "));
      }).join(", ");
      card.append(el("p", { "class": "disagree", "data-variant": d[0] },
        [el("b", null, "explainers disagree: "), said + " on " + variantName(d[0])]));
    });
    var scaleLegend = caseScale(c);
    if (scaleLegend) { card.append(scaleLegend); }
    var hidden = c.items.length - u.items.length;
    if (hidden > 0 && state.view !== "items") {
      card.append(el("p", { "class": "case-note" },
        hidden + " more variant" + (hidden > 1 ? "s" : "") + " of this case hidden by the filters."));
    }
    card.append(el("div", { "class": "variants" }, u.items.map(function (it) {
      return variantBlock(it, it === u.context);
    })));
    return card;
  }

  // The image file itself, at its own resolution with the object outlined (the cards show the model's input).
  function sourceButton(u) {
    var c = u.case;
    if (!safeUrl(c.source) || !u.items.length) { return null; }
    var size = c.source_size ? c.source_size[0] + " × " + c.source_size[1] + " px" : "";
    var b = el("button", { type: "button", "class": "link source-link", title: "The image file at its own resolution, object outlined" },
      "source image" + (size ? " (" + size + ")" : ""));
    b.addEventListener("click", function () { openLightbox(u.items[0], "source"); });
    return b;
  }

  function columnName(it) { return (it.model || "(unknown model)") + " · " + (it.explainer || "(unknown explainer)"); }

  // One case across models and explainers: variants in rows, one column each.
  function compareCard(u) {
    var c = u.case;
    var all = ITEMS.filter(function (it) { return sameCase(it) === sameCase(u.items[0]); });
    var columns = [];
    all.forEach(function (it) { if (columns.indexOf(columnName(it)) < 0) { columns.push(columnName(it)); } });
    columns.sort();
    var variants = [];
    u.items.forEach(function (it) { if (variants.indexOf(it.variant) < 0) { variants.push(it.variant); } });
    variants.sort(function (a, b) { return variantIndex(a) - variantIndex(b); });
    var head = el("tr", null, [el("th", { scope: "col" }, "variant")].concat(columns.map(function (name) {
      // Each column's maps keep their own case's colour scale: say which.
      var first = all.filter(function (x) { return columnName(x) === name; })[0];
      var scale = first && hasCaseScale(first.case) ? "colour scale ±" + fmt(first.case.heatmap_scale) : null;
      return el("th", { scope: "col" }, [name, scale ? el("span", { "class": "compare-scale" }, scale) : null]);
    })));
    var body = el("tbody");
    variants.forEach(function (variant) {
      var cells = columns.map(function (name) {
        var it = all.filter(function (x) { return x.variant === variant && columnName(x) === name; })[0];
        if (!it) { return el("td", { "class": "missing" }, "not run"); }
        return el("td", { "data-item-key": it.key, "data-group": it.group }, [
          badge(it.group),
          el("div", { "class": "compare-pred" }, "predicted " + (it.predicted === null ? "—" : it.predicted) + pct(it.p_predicted)),
          image(it, "heatmap", "Relevance map of " + c.case_id + ", " + variantName(variant) + ", " + name)
        ]);
      });
      var changed = all.some(function (x) { return x.variant === variant && x.changed; });
      body.append(el("tr", { "class": changed ? "changed" : null, "data-variant": variant },
        [el("th", { scope: "row" }, [variantName(variant), changed ? el("span", { "class": "changed-mark" }, "verdict changed") : null])].concat(cells)));
    });
    return el("article", { "class": "case compare rank-" + unitRank(u), "data-case-key": c.key, "data-compare": sameCase(u.items[0]) }, [
      el("div", { "class": "case-head" }, [el("h3", { "class": "case-title" }, c.case_id),
        el("div", { "class": "case-facts" }, [c.label ? el("span", null, ["class ", el("b", null, c.label)]) : null,
          c.location ? el("span", null, ["defined in ", el("code", null, c.location)]) : null])]),
      el("div", { "class": "compare-wrap" }, el("table", { "class": "compare-table" }, [el("thead", null, head), body]))
    ]);
  }

  function variantIndex(v) {
    var i = DATA.variants.indexOf(v);
    return i < 0 ? DATA.variants.length : i;
  }

  function unitCard(u) { return u.compare ? compareCard(u) : caseCard(u); }

  function pagerButton(label, page, current, aria) {
    var b = el("button", { type: "button", "aria-label": aria || ("Page " + page), "aria-current": page === current && !aria ? "page" : null }, label);
    b.disabled = page < 1 || page > state.pages || (aria === undefined && page === current);
    b.addEventListener("click", function () {
      state.page = page;
      render();
      document.getElementById("cases-title").scrollIntoView();
    });
    return b;
  }

  function renderPager() {
    var nav = document.getElementById("pager");
    nav.textContent = "";
    if (state.pages <= 1) { return; }
    var p = state.page;
    nav.append(pagerButton("‹ previous", p - 1, p, "Previous page"));
    var shown = {};
    [1, 2, p - 2, p - 1, p, p + 1, p + 2, state.pages - 1, state.pages].forEach(function (n) {
      if (n >= 1 && n <= state.pages) { shown[n] = true; }
    });
    var last = 0;
    Object.keys(shown).map(Number).sort(function (a, b) { return a - b; }).forEach(function (n) {
      if (n - last > 1) { nav.append(el("span", { "class": "gap" }, "…")); }
      nav.append(pagerButton(String(n), n, p));
      last = n;
    });
    nav.append(pagerButton("next ›", p + 1, p, "Next page"));
  }

  // Large pages ("all") are built in slices between frames, so the page stays
  // responsive; a newer render() abandons the slices of an older one.
  var CHUNK = 30;
  var generation = 0;
  function renderRest(container, rest, gen) {
    container.setAttribute("aria-busy", rest.length ? "true" : "false");
    if (!rest.length) { return; }
    setTimeout(function () {
      if (gen !== generation) { return; }
      var fragment = document.createDocumentFragment();
      rest.slice(0, CHUNK).forEach(function (u) { fragment.append(unitCard(u)); });
      container.append(fragment);
      renderRest(container, rest.slice(CHUNK), gen);
    }, 0);
  }

  function render() {
    readForm();
    var list = units();
    var size = state.size === "all" ? Math.max(list.length, 1) : parseInt(state.size, 10) || 25;
    state.pages = Math.max(1, Math.ceil(list.length / size));
    state.page = Math.min(Math.max(1, state.page), state.pages);
    var start = (state.page - 1) * size;
    var page = list.slice(start, start + size);
    // The lightbox steps through what the filters show, in this order.
    SHOWN = [];
    list.forEach(function (u) { u.items.forEach(function (it) { if (it !== u.context) { SHOWN.push(it); } }); });
    var container = document.getElementById("cases");
    container.className = "cases zoom-" + (state.zoom || "m");
    var fragment = document.createDocumentFragment();
    page.slice(0, CHUNK).forEach(function (u) { fragment.append(unitCard(u)); });
    if (!page.length) { fragment.append(el("p", { "class": "empty" }, "No item matches the filters.")); }
    container.replaceChildren(fragment);
    renderRest(container, page.slice(CHUNK), ++generation);
    var matched = 0;
    list.forEach(function (u) { matched += u.items.length; });
    var noun = state.view === "items" ? "items" : "cases";
    writeHash();
    document.getElementById("count-line").textContent = list.length
      ? "Showing " + noun + " " + (start + 1) + "–" + (start + page.length) + " of " + list.length +
        " (" + matched + " of " + ITEMS.length + " items match)."
      : "0 of " + ITEMS.length + " items match.";
    renderPager();
  }

  // ---- lightbox -------------------------------------------------------------------------------
  var lightbox = document.getElementById("lightbox");
  var SHOWN = [];
  var current = null;  // [item, kind] in the lightbox

  function lightboxInfo(it, kind) {
    var box = document.getElementById("lightbox-info");
    box.textContent = "";
    var c = it.case;
    box.append(el("div", { "class": "lightbox-verdict" }, [badge(it.group), " " + (it.message || "")]));
    box.append(facts(it));
    var table = checksTable(it);
    if (table) { box.append(table); }
    if (kind === "heatmap" || kind === "overlay" || kind === "heatmap_predicted") {
      box.append(hasCaseScale(c) ? caseScale(c) : colourBar(it.heatmap_scale));
    }
    if (kind === "source" && c.source_size) {
      box.append(el("p", { "class": "source-note" }, "The image file at its own size, " + c.source_size[0] + " × " +
        c.source_size[1] + " px, with the annotated object outlined in green; the other pictures show what the model saw."));
    }
    var at = SHOWN.indexOf(it);
    document.getElementById("lightbox-pos").textContent =
      at < 0 ? "" : "item " + (at + 1) + " of " + SHOWN.length + " shown · ← → to step";
  }

  function stepLightbox(delta) {
    if (!current) { return; }
    var at = SHOWN.indexOf(current[0]);
    var next = SHOWN[at + delta];
    if (at < 0 || !next) { return; }
    openLightbox(next, next.images[current[1]] ? current[1] : "heatmap");
  }

  function openLightbox(it, kind) {
    var kinds = Object.keys(it.images).filter(function (k) { return safeUrl(it.images[k]); });
    var show = function (k) {
      current = [it, k];
      lightboxInfo(it, k);
      document.getElementById("lightbox-img").src = safeUrl(it.images[k]);
      // A photo at its own size is scaled down smoothly; the model's small inputs keep their pixels.
      document.getElementById("lightbox-img").classList.toggle("smooth", k === "source");
      document.getElementById("lightbox-img").alt = (IMAGE_LABEL[k] || k) + " of " + it.case.case_id + ", " + variantName(it.variant);
      document.getElementById("lightbox-title").textContent = it.case.case_id + " · " + variantName(it.variant) + " · " + (IMAGE_LABEL[k] || k);
      box.querySelectorAll("button").forEach(function (b) { b.setAttribute("aria-pressed", String(b.dataset.kind === k)); });
    };
    var box = document.getElementById("lightbox-kinds");
    box.textContent = "";
    kinds.forEach(function (k) {
      var b = el("button", { type: "button", "data-kind": k }, IMAGE_LABEL[k] || k);
      b.addEventListener("click", function () { show(k); });
      box.append(b);
    });
    show(it.images[kind] ? kind : kinds[0]);
    if (lightbox.open) { return; }
    if (typeof lightbox.showModal === "function") { lightbox.showModal(); } else { lightbox.setAttribute("open", ""); }
  }
  // On the document: stepping rebuilds the dialog's buttons, and focus may fall back to the body.
  document.addEventListener("keydown", function (ev) {
    if (!lightbox.open) { return; }
    if (ev.key === "ArrowRight") { ev.preventDefault(); stepLightbox(1); }
    if (ev.key === "ArrowLeft") { ev.preventDefault(); stepLightbox(-1); }
  });
  document.getElementById("lightbox-prev").addEventListener("click", function () { stepLightbox(-1); });
  document.getElementById("lightbox-next").addEventListener("click", function () { stepLightbox(1); });
  lightbox.addEventListener("close", function () { current = null; });
  document.getElementById("lightbox-close").addEventListener("click", function () { lightbox.close(); });
  lightbox.addEventListener("click", function (ev) { if (ev.target === lightbox) { lightbox.close(); } });

  // ---- export ---------------------------------------------------------------------------------
  var EXPORT_FIELDS = ["suite", "line", "case_id", "variant", "model", "explainer", "label", "predicted",
    "verdict", "message", "review", "comment", "reviewed_at", "nodeid", "fingerprint"];

  function exportRows() {
    // Every model failure, and any other item that was flagged.
    return ITEMS.filter(function (it) { return it.review || reviews[it.fingerprint]; }).map(function (it) {
      var c = it.case;
      var r = reviews[it.fingerprint] || {};
      return {
        suite: c.suite, line: c.line, case_id: c.case_id, variant: it.variant, model: c.model,
        explainer: c.explainer, label: it.label || c.label, predicted: it.predicted, verdict: it.verdict,
        message: it.message, review: r.mark ? MARK_LABEL[r.mark] : "", comment: r.comment || "",
        reviewed_at: r.at || "", nodeid: it.nodeid, fingerprint: it.fingerprint
      };
    });
  }

  function csvCell(value) {
    if (value === null || value === undefined) { return ""; }
    var text = String(value);
    // A leading = + - @ makes spreadsheets evaluate the cell as a formula.
    if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) { text = "'" + text; }
    return "\"" + text.replace(/"/g, "\"\"") + "\"";
  }

  function download(name, type, text) {
    var url = URL.createObjectURL(new Blob([text], { type: type }));
    var a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
  }

  function stamp() { return new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-"); }

  document.getElementById("export-csv").addEventListener("click", function () {
    var lines = [EXPORT_FIELDS.join(",")];
    exportRows().forEach(function (row) {
      lines.push(EXPORT_FIELDS.map(function (f) { return csvCell(row[f]); }).join(","));
    });
    // The byte order mark makes spreadsheet programs read the file as UTF-8.
    download("xai-review-" + stamp() + ".csv", "text/csv;charset=utf-8", "\ufeff" + lines.join("\r\n") + "\r\n");
  });
  document.getElementById("export-json").addEventListener("click", function () {
    var doc = { report: DATA.title, run: DATA.run, exported: new Date().toISOString(), reviews: exportRows() };
    download("xai-review-" + stamp() + ".json", "application/json", JSON.stringify(doc, null, 2));
  });

  // ---- import: merge exported reviews (JSON) from another browser or reviewer -----------------
  var MARK_ID = {};
  MARKS.forEach(function (m) { MARK_ID[m[1]] = m[0]; MARK_ID[m[0]] = m[0]; });

  // A review wins when this browser has none for the item, or an older one.
  function mergeReviews(doc) {
    var rows = doc && Array.isArray(doc.reviews) ? doc.reviews : [];
    var known = {};
    ITEMS.forEach(function (it) { known[it.fingerprint] = it; });
    var taken = 0, skipped = 0;
    rows.forEach(function (row) {
      var mark = MARK_ID[row.review] || "";
      var it = known[row.fingerprint];
      if (!it || (!mark && !row.comment)) { skipped += 1; return; }
      var mine = reviews[it.fingerprint];
      if (mine && (mine.at || "") >= (row.reviewed_at || "")) { skipped += 1; return; }
      reviews[it.fingerprint] = {
        mark: mark, comment: row.comment || "", verdict: it.verdict, key: it.key,
        run: doc.run || "", at: row.reviewed_at || new Date().toISOString()
      };
      taken += 1;
    });
    saveReviews();
    updateReviewStatus();
    render();
    document.getElementById("import-status").textContent =
      "Imported " + taken + " review" + (taken === 1 ? "" : "s") + (skipped ? "; " + skipped + " skipped (not in this report, empty, or older than yours)" : "") + ".";
  }

  document.getElementById("import-json").addEventListener("change", function (ev) {
    var file = ev.target.files && ev.target.files[0];
    if (!file) { return; }
    file.text().then(function (text) {
      try { mergeReviews(JSON.parse(text)); } catch (err) {
        document.getElementById("import-status").textContent = "Not an exported review file: " + err.message;
      }
      ev.target.value = "";
    });
  });

  // ---- wiring -----------------------------------------------------------------------------------
  var searchTimer = null;
  form.addEventListener("change", function () { state.page = 1; render(); });
  form.addEventListener("input", function (ev) {
    if (ev.target.name !== "q") { return; }
    clearTimeout(searchTimer);
    searchTimer = setTimeout(function () { state.page = 1; render(); }, 200);
  });
  form.addEventListener("submit", function (ev) { ev.preventDefault(); });
  form.addEventListener("reset", function () { setTimeout(function () { state.page = 1; render(); }, 0); });

  function applyFilter(name, value) {
    form.reset();
    var field = form.elements[name];
    if (field.type === "checkbox") { field.checked = value === field.value; } else { field.value = value; }
    state.page = 1;
    render();
    document.getElementById("cases-title").scrollIntoView();
  }
  document.querySelectorAll(".tile[data-verdict]").forEach(function (b) {
    b.addEventListener("click", function () { applyFilter("verdict", b.dataset.verdict); });
  });
  document.querySelectorAll("button[data-filter]").forEach(function (b) {
    b.addEventListener("click", function () { applyFilter(b.dataset.filter, b.dataset.value); });
  });

  window.addEventListener("hashchange", function () {
    if (window.location.hash === stateHash()) { return; }
    readHash();
    render();
  });

  updateReviewStatus();
  readHash();
  render();
  document.body.dataset.ready = "true";
})();
