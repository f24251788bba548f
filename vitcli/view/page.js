"use strict";
// vitcli view: everything from the inlined JSON; attention rows are softmax(scale·q·Kᵀ) computed here
// from float16 Q and K (or stored float16 rows), in float64.
(function () {
  const DATA = JSON.parse(document.getElementById("vitcli-data").textContent);
  const $ = (id) => document.getElementById(id);
  const F16 = (() => { // every float16 bit pattern as a number
    const t = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, f = h & 1023;
      t[h] = e === 0 ? s * f * 2 ** -24 : e === 31 ? (f ? NaN : s * Infinity) : s * (1 + f / 1024) * 2 ** (e - 15);
    }
    return t;
  })();

  function bytes(b64) {
    const s = atob(b64), out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function decode(arr) { // {dtype, shape, data} → Float32Array (with .shape)
    const raw = bytes(arr.data);
    let out;
    if (arr.dtype === "f16") {
      const u = new Uint16Array(raw.buffer, 0, raw.length >> 1);
      out = new Float32Array(u.length);
      for (let i = 0; i < u.length; i++) out[i] = F16[u[i]];
    } else out = new Float32Array(raw.buffer, 0, raw.length >> 2);
    out.shape = arr.shape;
    return out;
  }

  const H = DATA.heads, P = DATA.num_prefix, LAYERS = DATA.layers;
  const state = { tab: 0, layer: LAYERS[LAYERS.length - 1], head: "mean", query: 0, locked: false };
  const tabs = [];
  let current = null, lastMs = 0;
  const ticks = {}, legend = {};  // canvas id → its y-axis labels; the norms legend's [left, right] (vitcli.axes())

  async function loadTab(t) {
    const grid = t.grid, T = P + grid[0] * grid[1];
    const tab = { name: t.name, grid, T, raw: t, cache: new Map() };
    tab.attention = t.attention.map((a) => a.kind === "qk" ? { kind: "qk", q: decode(a.q), k: decode(a.k) }
                                                          : { kind: "rows", rows: decode(a.rows) });
    tab.rollout = decode(t.rollout);
    tab.distance = decode(t.distance);
    tab.similarity = t.similarity.map(decode);
    tab.norms = decode(t.norms);
    tab.posenc = t.posenc ? decode(t.posenc) : null;
    tab.explain = t.explain ? decode(t.explain.map) : null;
    tab.text = t.text ? t.text.panels.map((p) => ({ prompt: p.prompt, map: decode(p.map), prob: p.prob, logit: p.logit })) : null;
    tab.image = await createImageBitmap(new Blob([bytes(t.image)], { type: "image/png" }));
    if (t.to) {
      tab.to = { name: t.to.name, grid: t.to.grid, image: await createImageBitmap(new Blob([bytes(t.to.image)], { type: "image/png" })) };
    }
    return tab;
  }

  // --- attention rows ------------------------------------------------------------------------
  function headRows(tab, layer, query) { // H rows of T weights (Float64Array) of `query` at `layer`
    const key = layer + ":" + query;
    if (tab.cache.has(key)) return tab.cache.get(key);
    const a = tab.attention[LAYERS.indexOf(layer)], T = tab.T, rows = [];
    for (let h = 0; h < H; h++) {
      const row = new Float64Array(T);
      if (a.kind === "rows") {
        const off = (h * T + query) * T;
        for (let j = 0; j < T; j++) row[j] = a.rows[off + j];
      } else {
        const d = a.q.shape[2], qo = (h * T + query) * d;
        let m = -Infinity;
        for (let j = 0; j < T; j++) {
          const ko = (h * T + j) * d;
          let s = 0;
          for (let c = 0; c < d; c++) s += a.q[qo + c] * a.k[ko + c];
          row[j] = s * DATA.scale;
          if (row[j] > m) m = row[j];
        }
        let z = 0;
        for (let j = 0; j < T; j++) { row[j] = Math.exp(row[j] - m); z += row[j]; }
        for (let j = 0; j < T; j++) row[j] /= z;
      }
      rows.push(row);
    }
    if (tab.cache.size > 256) tab.cache.clear();
    tab.cache.set(key, rows);
    return rows;
  }
  function fused(rows, head) { // one head's row, or the heads' mean / max / min
    if (typeof head === "number") return rows[head];
    const T = rows[0].length, out = new Float64Array(T);
    for (let j = 0; j < T; j++) {
      let v = rows[0][j];
      for (let h = 1; h < rows.length; h++) {
        const x = rows[h][j];
        v = head === "mean" ? v + x : head === "max" ? Math.max(v, x) : Math.min(v, x);
      }
      out[j] = head === "mean" ? v / rows.length : v;
    }
    return out;
  }

  // --- colours and drawing -----------------------------------------------------------------------
  const STOPS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
                 [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]]; // viridis
  function colour(t) {
    t = Math.min(1, Math.max(0, isFinite(t) ? t : 0)) * (STOPS.length - 1);
    const i = Math.min(STOPS.length - 2, Math.floor(t)), f = t - i, a = STOPS[i], b = STOPS[i + 1];
    return [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
  }
  function range(map) {
    let lo = Infinity, hi = -Infinity;
    for (const v of map) { if (v < lo) lo = v; if (v > hi) hi = v; }
    return [lo, hi];
  }
  function displaySize(grid, width) {
    const w = width, h = Math.round(width * grid[0] / grid[1]);
    return [w, h];
  }
  const panels = {};
  function drawMap(id, image, grid, map, title, mark) { // image faded under the map, nearest cells
    const cv = $(id), [w, h] = displaySize(grid, id === "attn" ? 420 : 260);
    cv.width = w; cv.height = h;
    const ctx = cv.getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(image, 0, 0, w, h);
    const [lo, hi] = range(map), cells = new ImageData(grid[1], grid[0]);
    for (let i = 0; i < map.length; i++) {
      const c = colour((map[i] - lo) / (hi - lo || 1));
      cells.data.set([c[0], c[1], c[2], 190], 4 * i);
    }
    const off = new OffscreenCanvas(grid[1], grid[0]);
    off.getContext("2d").putImageData(cells, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, 0, 0, w, h);
    if (mark) outline(ctx, grid, w, h, mark, "#ff1744");
    drawBar(id + "-bar", w, lo, hi);
    $(id + "-title") && ($(id + "-title").textContent = title);
    panels[id] = { grid, map, w, h };
  }
  function clearMap(id, image, grid, title) { // a prefix query has no map here: the image alone, faded
    const cv = $(id), [w, h] = displaySize(grid, 260);
    cv.width = w; cv.height = h;
    const ctx = cv.getContext("2d");
    ctx.globalAlpha = 0.25; ctx.drawImage(image, 0, 0, w, h); ctx.globalAlpha = 1;
    $(id + "-bar").width = w; $(id + "-bar").getContext("2d").clearRect(0, 0, w, 26);
    $(id + "-title").textContent = title; $(id + "-value").innerHTML = "&nbsp;";
    delete panels[id];
  }
  function drawBar(id, w, lo, hi) {
    const cv = $(id);
    cv.width = w; cv.height = 26;
    const ctx = cv.getContext("2d");
    for (let x = 0; x < w; x++) { const c = colour(x / (w - 1)); ctx.fillStyle = `rgb(${c})`; ctx.fillRect(x, 0, 1, 10); }
    ctx.fillStyle = "#333"; ctx.font = "11px sans-serif";
    ctx.textAlign = "left"; ctx.fillText(fmt(lo), 0, 23);
    ctx.textAlign = "right"; ctx.fillText(fmt(hi), w, 23);
    ctx.textAlign = "center"; ctx.fillText(fmt((lo + hi) / 2), w / 2, 23);
  }
  function fmt(v) { return Math.abs(v) >= 0.01 || v === 0 ? v.toFixed(4) : v.toExponential(3); }
  function outline(ctx, grid, w, h, rc, colour) {
    const cw = w / grid[1], ch = h / grid[0];
    ctx.strokeStyle = colour; ctx.lineWidth = 2;
    ctx.strokeRect(rc[1] * cw + 1, rc[0] * ch + 1, cw - 2, ch - 2);
  }
  function hoverReadout(id) {
    const cv = $(id);
    cv.addEventListener("mousemove", (ev) => {
      const p = panels[id];
      if (!p) return;
      const r = Math.floor(ev.offsetY / p.h * p.grid[0]), c = Math.floor(ev.offsetX / p.w * p.grid[1]);
      if (r < 0 || c < 0 || r >= p.grid[0] || c >= p.grid[1]) return;
      $(id + "-value").textContent = `patch (${r}, ${c}): ${p.map[r * p.grid[1] + c].toPrecision(6)}`;
    });
  }

  // --- the selection -----------------------------------------------------------------------------
  function tokenName(tab, t) {
    if (t < P) return DATA.prefix_names[t];
    const i = t - P;
    return `patch (${Math.floor(i / tab.grid[1])}, ${i % tab.grid[1]})`;
  }
  function queryToken(tab, q) { // "cls" | index | [row, col] → token index
    if (q === undefined) return DATA.class_token ? 0 : P + Math.floor(tab.grid[0] / 2) * tab.grid[1] + Math.floor(tab.grid[1] / 2);
    if (q === "cls" && !DATA.class_token) throw new Error("this model has no class token: give a patch [row, col]");
    if (typeof q === "string" && DATA.prefix_names.includes(q)) return DATA.prefix_names.indexOf(q);
    if (Array.isArray(q)) {
      const [r, c] = q;
      if (r < 0 || c < 0 || r >= tab.grid[0] || c >= tab.grid[1]) throw new Error(`patch ${r},${c} is outside the ${tab.grid[0]}x${tab.grid[1]} grid`);
      return P + r * tab.grid[1] + c;
    }
    if (!Number.isInteger(q) || q < 0 || q >= tab.T) throw new Error(`token ${q} is outside 0..${tab.T - 1}`);
    return q;
  }
  function select(sel) {
    sel = sel || {};
    if (sel.tab !== undefined) {
      if (!tabs[sel.tab]) throw new Error(`tab ${sel.tab} is not 0..${tabs.length - 1}`);
      state.tab = sel.tab; current = tabs[state.tab]; state.query = queryToken(current); state.locked = false;
    }
    if (sel.layer !== undefined) {
      const l = sel.layer < 0 ? DATA.depth + sel.layer : sel.layer;
      if (!LAYERS.includes(l)) throw new Error(`layer ${sel.layer} is not embedded (embedded: ${LAYERS.join(", ")})`);
      state.layer = l;
    }
    if (sel.head !== undefined) {
      const h = sel.head;
      if (!(["mean", "max", "min"].includes(h) || (Number.isInteger(h) && h >= 0 && h < H))) throw new Error(`head ${h} is not 0..${H - 1}, mean, max or min`);
      state.head = h;
    }
    if (sel.query !== undefined) state.query = queryToken(current, sel.query);
    update();
    return { layer: state.layer, head: state.head, query: state.query, name: tokenName(current, state.query) };
  }

  function update() {
    const t0 = performance.now(), tab = current, n = tab.grid[0] * tab.grid[1];
    const rows = headRows(tab, state.layer, state.query), map = fused(rows, state.head);
    const mark = state.query >= P ? [Math.floor((state.query - P) / tab.grid[1]), (state.query - P) % tab.grid[1]] : null;
    const qname = tokenName(tab, state.query), hname = typeof state.head === "number" ? `head ${state.head}` : `heads' ${state.head}`;
    tab.map = map.slice(P);
    drawMap("attn", tab.image, tab.grid, tab.map, `attention of ${qname}, layer ${state.layer}, ${hname}`, mark);
    const roll = tab.rollout.subarray(state.query * tab.T + P, (state.query + 1) * tab.T);
    drawMap("rollout", tab.image, tab.grid, roll, `rollout from ${qname} (heads' mean, all layers)`, mark);
    const S = tab.similarity[LAYERS.indexOf(state.layer)], N2 = S.shape[1];
    const simGrid = tab.to ? tab.to.grid : tab.grid;
    drawMap("sim", tab.to ? tab.to.image : tab.image, simGrid, S.subarray(state.query * N2, (state.query + 1) * N2),
            `cosine similarity of ${qname}'s feature, block ${state.layer}, final norm${tab.to ? " — vs " + tab.to.name : ""}`,
            tab.to ? null : mark);
    $("pos-panel").hidden = !tab.posenc;
    if (tab.posenc) {
      if (mark) drawMap("pos", tab.image, tab.grid, tab.posenc.subarray((state.query - P) * n, (state.query - P + 1) * n),
                        `position-embedding similarity of ${qname} (ViT fig. 7 centre)`, mark);
      else clearMap("pos", tab.image, tab.grid, "position-embedding similarity: pick a patch");
    }
    $("explain-panel").hidden = !tab.explain;
    if (tab.explain) drawMap("explain", tab.image, tab.grid, tab.explain, `grad-rollout, ${tab.raw.explain.target}` + (tab.raw.explain.label ? ` (${tab.raw.explain.label})` : ""), null);
    drawText(tab);
    drawPicker(mark);
    headTable(rows);
    drawDistance();
    drawNorms();
    syncControls();
    lastMs = performance.now() - t0;
  }

  function drawPicker(mark) {
    const tab = current, cv = $("picker"), [w, h] = displaySize(tab.grid, 420);
    cv.width = w; cv.height = h;
    const ctx = cv.getContext("2d");
    ctx.drawImage(tab.image, 0, 0, w, h);
    ctx.strokeStyle = "rgba(255,255,255,0.45)"; ctx.lineWidth = 1;
    for (let r = 1; r < tab.grid[0]; r++) { const y = Math.round(r * h / tab.grid[0]) + 0.5; ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke(); }
    for (let c = 1; c < tab.grid[1]; c++) { const x = Math.round(c * w / tab.grid[1]) + 0.5; ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, h); ctx.stroke(); }
    if (mark) outline(ctx, tab.grid, w, h, mark, state.locked ? "#ff1744" : "#ffb300");
    panels.picker = { grid: tab.grid, w, h };
  }

  // Entropy in nats of row / its sum: the heads' max or min of rows is no distribution (as `attend --head max`).
  function entropy(row) {
    let s = 0, e = 0;
    for (const w of row) s += w;
    for (const w of row) if (w > 0) e -= (w / s) * Math.log(w / s);
    return e;
  }
  function headTable(rows) {
    const tab = current, L = DATA.depth, body = $("heads").tBodies[0], dist = tab.distance, li = state.layer;
    const list = [...rows.map((r, h) => [h, r]), ...["mean", "max", "min"].map((f) => [f, fused(rows, f)])];
    body.innerHTML = "";
    for (const [h, row] of list) {
      let j = 0;
      for (let i = 1; i < row.length - P; i++) if (row[P + i] > row[P + j]) j = i;
      let md = 0;
      if (typeof h === "number") md = dist[li * H + h];
      else { for (let k = 0; k < H; k++) md += dist[li * H + k]; md /= H; }
      const tr = document.createElement("tr");
      tr.className = h === state.head ? "on" : "";
      const cells = [typeof h === "number" ? h : h, entropy(row).toFixed(3), `(${Math.floor(j / tab.grid[1])}, ${j % tab.grid[1]})`,
                     row[P + j].toFixed(4), DATA.class_token ? row[0].toFixed(4) : "–", typeof h === "number" || h === "mean" ? md.toFixed(1) : "–"];
      for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
      tr.addEventListener("click", () => select({ head: h }));
      body.appendChild(tr);
    }
    $("heads-title").textContent = `heads of layer ${li}, query ${tokenName(tab, state.query)}` + (L ? "" : "");
  }

  // A round tick step (1, 2, 2.5 or 5 × 10^k) giving about `count` steps up to `max`.
  function niceStep(max, count) {
    const raw = (max || 1) / count, unit = Math.pow(10, Math.floor(Math.log10(raw)));
    return unit * [1, 2, 2.5, 5, 10].find((m) => m * unit >= raw * (1 - 1e-9));
  }
  function axes(ctx, w, h, pad, xmax, ymax, xlabel, ylabel) {
    const ystep = niceStep(ymax, 4);
    ymax = Math.ceil((ymax || 1) / ystep - 1e-9) * ystep;  // the axis ends on a round tick: 0, 25, 50, 75, 100
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = "#90a4ae"; ctx.fillStyle = "#455a64"; ctx.font = "11px sans-serif"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(pad, 8); ctx.lineTo(pad, h - pad); ctx.lineTo(w - 8, h - pad); ctx.stroke();
    const X = (x) => pad + 14 + (x / Math.max(xmax, 1)) * (w - pad - 36), Y = (y) => h - pad - (y / (ymax || 1)) * (h - pad - 14);
    ctx.textAlign = "center";
    for (let l = 0; l <= xmax; l += Math.max(1, Math.ceil(xmax / 12))) ctx.fillText(l, X(l), h - pad + 13);
    ctx.fillText(xlabel, (w + pad) / 2, h - 4);
    ctx.textAlign = "right";
    let digits = 0;
    while (digits < 10 && Math.abs(Math.round(ystep * 10 ** digits) - ystep * 10 ** digits) > 1e-6) digits++;
    const labels = [];
    for (let k = 0; k * ystep <= ymax * (1 + 1e-9); k++) labels.push((k * ystep).toFixed(digits));
    for (const t of labels) ctx.fillText(t, pad - 3, Y(Number(t)) + 4);
    ticks[ctx.canvas.id] = labels;
    ctx.save(); ctx.translate(10, h / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center"; ctx.fillText(ylabel, 0, 0); ctx.restore();
    return [X, Y];
  }
  function drawDistance() {
    const tab = current, cv = $("distance"), ctx = cv.getContext("2d"), L = DATA.depth, d = tab.distance;
    const ymax = Math.max(...d) * 1.05 || 1;
    const [X, Y] = axes(ctx, cv.width, cv.height, 42, L - 1, ymax, "layer", "mean distance (px)");
    ctx.fillStyle = "rgba(255,179,0,0.18)"; ctx.fillRect(X(state.layer) - 6, 8, 12, cv.height - 50);
    ctx.strokeStyle = state.head === "mean" ? "#d81b60" : "#78909c"; ctx.lineWidth = state.head === "mean" ? 2 : 1;
    ctx.beginPath();
    for (let l = 0; l < L; l++) {
      let m = 0;
      for (let h = 0; h < H; h++) m += d[l * H + h] / H;
      l ? ctx.lineTo(X(l), Y(m)) : ctx.moveTo(X(l), Y(m));
    }
    ctx.stroke();
    ctx.fillStyle = "#455a64"; ctx.textAlign = "left";
    ctx.fillText("dots: heads" + (typeof state.head === "number" ? ` (head ${state.head} in red)` : "") + " · line: heads' mean", 48, cv.height - 44);
    for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) {
      const on = h === state.head;
      ctx.fillStyle = on ? "#d81b60" : "rgba(38,50,56,0.45)";
      ctx.beginPath(); ctx.arc(X(l), Y(d[l * H + h]), on ? 4 : 2.5, 0, 7); ctx.fill();
    }
  }
  function drawNorms() {
    const tab = current, cv = $("norms"), ctx = cv.getContext("2d"), L = DATA.depth, T = tab.T, nm = tab.norms;
    let ymax = 0;
    const th = tab.raw.norm_thresholds;
    for (const v of nm) ymax = Math.max(ymax, v);
    for (const v of th) ymax = Math.max(ymax, v);
    const [X, Y] = axes(ctx, cv.width, cv.height, 42, L - 1, ymax * 1.05, "layer", "token norm");
    for (let l = 0; l < L; l++) {
      const patch = Array.from(nm.subarray(l * T + P, (l + 1) * T)).sort((a, b) => a - b);
      ctx.strokeStyle = "#b0bec5"; ctx.lineWidth = 6;
      ctx.beginPath(); ctx.moveTo(X(l), Y(patch[0])); ctx.lineTo(X(l), Y(patch[patch.length - 1])); ctx.stroke();
      ctx.fillStyle = "#37474f"; ctx.fillRect(X(l) - 4, Y(patch[patch.length >> 1]) - 1, 8, 2);
      ctx.strokeStyle = "#e53935"; ctx.lineWidth = 1; ctx.setLineDash([3, 2]);
      ctx.beginPath(); ctx.moveTo(X(l) - 7, Y(th[l])); ctx.lineTo(X(l) + 7, Y(th[l])); ctx.stroke(); ctx.setLineDash([]);
    }
    ctx.fillStyle = "#e53935";
    for (const o of tab.raw.outliers) { ctx.beginPath(); ctx.arc(X(o.layer), Y(o.norm), 2.5, 0, 7); ctx.fill(); }
    const lines = DATA.prefix_names.map((n, i) => [i, n + (i === state.query ? " (selected)" : ""), ["#1e88e5", "#8e24aa", "#fb8c00", "#43a047", "#00acc1", "#6d4c41"][i % 6]]);
    if (state.query >= P) lines.push([state.query, "selected: " + tokenName(tab, state.query), "#000"]);
    let ly = cv.height - 52 - 13 * lines.length;
    const key = `● outliers (${tab.raw.outliers.length}), - - threshold`;
    const widest = Math.max(...[key, ...lines.map((l) => l[1])].map((s) => ctx.measureText(s).width));
    const lx = cv.width - 8 - widest;  // the legend ends 8 px inside the chart: never clipped
    legend.norms = [lx, lx + widest, cv.width];
    for (const [t, name, col] of lines) {
      ctx.strokeStyle = col; ctx.lineWidth = t === state.query ? 2 : 1.5; ctx.beginPath();
      for (let l = 0; l < L; l++) { const p = [X(l), Y(nm[l * T + t])]; l ? ctx.lineTo(...p) : ctx.moveTo(...p); }
      ctx.stroke();
      ctx.fillStyle = col; ctx.textAlign = "left"; ctx.fillText(name, lx, ly); ly += 13;
    }
    ctx.fillStyle = "#e53935"; ctx.textAlign = "left"; ctx.fillText(key, lx, ly);
  }

  // --- text prompts: a LeGrad map and a zero-shot score per prompt -------------------------------
  function textCaption(p, rule, k) { // the prompt, always as text (textContent), and its score
    const score = rule === "softmax" ? `p = ${p.prob.toFixed(4)} (softmax over ${k} prompts)`
                : `p = ${p.prob.toFixed(4)} (sigmoid of logit ${p.logit.toFixed(3)})`;
    return `LeGrad for “${p.prompt}” · ${score}`;
  }
  function makeTextPanels() { // one figure per prompt, ids text-I, text-I-bar, text-I-title, text-I-value
    const row = $("text-panels");
    if (!DATA.text) return;
    DATA.text.prompts.forEach((_, i) => {
      const fig = document.createElement("figure"), cap = document.createElement("figcaption");
      fig.className = "panel text-panel";
      cap.id = `text-${i}-title`;
      fig.appendChild(cap);
      for (const [tag, id, cls] of [["canvas", `text-${i}`, ""], ["canvas", `text-${i}-bar`, "bar"], ["div", `text-${i}-value`, "readout"]]) {
        const el = document.createElement(tag);
        el.id = id;
        if (cls) el.className = cls;
        if (tag === "div") el.textContent = "\u00a0";
        fig.appendChild(el);
      }
      row.appendChild(fig);
      hoverReadout(`text-${i}`);
    });
    row.className = "row"; // not before: .row sets display, which would override [hidden]
    row.hidden = false;
  }
  let textDrawn = null;
  function drawText(tab) { // the maps change with the tab only
    if (!tab.text || textDrawn === tab) return;
    tab.text.forEach((p, i) => drawMap(`text-${i}`, tab.image, tab.grid, p.map, textCaption(p, DATA.text.rule, tab.text.length), null));
    textDrawn = tab;
  }

  // --- controls ----------------------------------------------------------------------------------
  function option(sel, value, text) { const o = document.createElement("option"); o.value = value; o.textContent = text; sel.appendChild(o); }
  function fillQueries() {
    const q = $("query");
    q.innerHTML = "";
    DATA.prefix_names.forEach((n, i) => option(q, i, n));
    option(q, "patch", "patch (pick on the image)");
  }
  function syncControls() {
    $("layer").value = state.layer;
    $("head").value = state.head;
    $("query").value = state.query < P ? state.query : "patch";
    $("lock").textContent = state.locked ? "locked (click the image to unlock)" : "";
    document.querySelectorAll("nav button").forEach((b, i) => b.classList.toggle("on", i === state.tab));
  }
  function cellAt(ev) {
    const p = panels.picker;
    const r = Math.floor(ev.offsetY / p.h * p.grid[0]), c = Math.floor(ev.offsetX / p.w * p.grid[1]);
    return r >= 0 && c >= 0 && r < p.grid[0] && c < p.grid[1] ? [r, c] : null;
  }
  function wire() {
    $("model").textContent = `${DATA.model.name} · ${DATA.model.source} · layers ${LAYERS.join(", ")} embedded`;
    LAYERS.forEach((l) => option($("layer"), l, l));
    for (let h = 0; h < H; h++) option($("head"), h, h);
    ["mean", "max", "min"].forEach((f) => option($("head"), f, f));
    fillQueries();
    tabs.forEach((t, i) => { const b = document.createElement("button"); b.textContent = t.name.split("/").pop(); b.title = t.name;
                             b.addEventListener("click", () => select({ tab: i })); $("tabs").appendChild(b); });
    $("layer").addEventListener("change", (e) => select({ layer: +e.target.value }));
    $("head").addEventListener("change", (e) => { const v = e.target.value; select({ head: /^\d+$/.test(v) ? +v : v }); });
    $("query").addEventListener("change", (e) => { // a prefix token from the list stays until a click on the image
      const v = e.target.value;
      state.locked = v !== "patch";
      select({ query: v === "patch" ? [current.grid[0] >> 1, current.grid[1] >> 1] : +v });
    });
    const picker = $("picker");
    picker.addEventListener("mousemove", (ev) => { const rc = cellAt(ev); if (rc && !state.locked) select({ query: rc }); });
    picker.addEventListener("click", (ev) => { // lock on this patch; a second click on it unlocks
      const rc = cellAt(ev);
      if (!rc) return;
      const same = state.query === P + rc[0] * current.grid[1] + rc[1];
      state.locked = !(state.locked && same);
      select({ query: rc });
      picker.focus();
    });
    ["attn", "rollout", "sim", "pos", "explain"].forEach(hoverReadout);
    makeTextPanels();
    document.addEventListener("keydown", (ev) => {
      if (ev.target.tagName === "SELECT") return;
      const g = current.grid, q = state.query;
      let [r, c] = q >= P ? [Math.floor((q - P) / g[1]), (q - P) % g[1]] : [g[0] >> 1, g[1] >> 1];
      const li = LAYERS.indexOf(state.layer), heads = [...Array(H).keys(), "mean", "max", "min"], hi = heads.indexOf(state.head);
      const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
      if (moves[ev.key]) {
        if (q >= P) { r = Math.min(g[0] - 1, Math.max(0, r + moves[ev.key][0])); c = Math.min(g[1] - 1, Math.max(0, c + moves[ev.key][1])); }
        select({ query: [r, c] });
      } else if (ev.key === "[" || ev.key === "]") select({ layer: LAYERS[Math.min(LAYERS.length - 1, Math.max(0, li + (ev.key === "]" ? 1 : -1)))] });
      else if (ev.key === "-" || ev.key === "=") select({ head: heads[(hi + (ev.key === "=" ? 1 : heads.length - 1)) % heads.length] });
      else return;
      ev.preventDefault();
    });
  }

  const api = {
    select,
    currentMap: () => Array.from(current.map),
    maps: () => ({ attention: Array.from(current.map), rollout: Array.from(panels.rollout.map), similarity: Array.from(panels.sim.map),
                   posenc: state.query >= P && panels.pos ? Array.from(panels.pos.map) : null }),
    state: () => ({ ...state, name: tokenName(current, state.query) }),
    textPanels: () => (current.text || []).map((p, i) => ({ prompt: p.prompt, prob: p.prob, map: Array.from(panels[`text-${i}`].map),
                                                             caption: $(`text-${i}-title`).textContent })),
    lastUpdateMs: () => lastMs,
    axes: () => ({ ticks: { ...ticks }, legend: { ...legend } }),  // the charts' y labels and the norms legend, as drawn
    readyMs: null,
    data: DATA,
  };
  window.vitcli = api;
  api.ready = (async () => {
    for (const t of DATA.tabs) tabs.push(await loadTab(t));
    current = tabs[0];
    wire();
    state.query = queryToken(current);
    update();
    api.readyMs = performance.now();
    return api.state();
  })();
})();
