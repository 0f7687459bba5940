// sociomap viewer: the map, the layer panel (toggle, counts, zoom to) and feature popups.
// Reads the JSON config the page embeds (built by sociomap.viewer.html); no network beyond this page's origin.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("sociomap-config").textContent);
  const state = { map: null, config: config, ready: false, errors: [], popup: null };
  window.sociomapViewer = state;

  // Relative URLs of the served page become absolute: MapLibre fetches tiles from a worker.
  const absolute = (url) => (typeof url === "string" && url.startsWith("/") ? location.origin + url : url);
  for (const source of Object.values(config.style.sources)) {
    if (typeof source.url === "string" && source.url.startsWith("pmtiles:///")) {
      source.url = "pmtiles://" + location.origin + source.url.slice("pmtiles://".length);
    } else if (source.url) {
      source.url = absolute(source.url);
    }
    if (source.tiles) source.tiles = source.tiles.map(absolute);
    if (typeof source.data === "string") source.data = absolute(source.data);
  }
  if (window.pmtiles) {
    maplibregl.addProtocol("pmtiles", new pmtiles.Protocol().tile);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "style") Object.assign(node.style, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const map = new maplibregl.Map({
    container: "map",
    style: config.style,
    bounds: config.bounds,
    fitBoundsOptions: { padding: { top: 30, bottom: 30, left: 330, right: 30 } },
    attributionControl: { compact: false },
    maxZoom: 21,
  });
  state.map = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
  map.on("error", (event) => state.errors.push(String((event.error && event.error.message) || event)));
  map.on("load", () => {
    map.once("idle", () => {
      state.ready = true;
      document.body.dataset.state = "ready";
    });
  });

  // ---- the panel ---------------------------------------------------------------------------------------
  function buildPanel() {
    const panel = document.getElementById("panel");
    panel.append(el("h1", {}, config.title));
    if (config.randomWeights) {
      panel.append(el("p", { class: "warning" }, "RANDOM WEIGHTS: these layers come from a random test checkpoint and are meaningless."));
    }
    panel.append(el("p", {}, config.description));
    if (config.backgrounds.length) {
      panel.append(el("h2", {}, "Background"));
      const choices = [...config.backgrounds, { id: "none", label: "None" }];
      choices.forEach((choice, index) => {
        const input = el("input", { type: "radio", name: "background", value: choice.id, "data-background": choice.id });
        input.checked = index === 0;
        input.addEventListener("change", () => showBackground(choice.id));
        panel.append(el("label", {}, input, choice.label));
      });
    }
    panel.append(el("h2", {}, "Layers"));
    for (const layer of config.layers) {
      const input = el("input", { type: "checkbox", "data-layer": layer.slug });
      input.checked = true;
      input.addEventListener("change", () => setLayerVisible(layer, input.checked));
      const zoom = layer.bounds
        ? el("button", { class: "zoom", title: "zoom to this layer", onclick: (e) => { e.preventDefault(); map.fitBounds(layer.bounds, { padding: 60, maxZoom: 18 }); } }, "⤢")
        : null;
      const label = el("label", { "data-legend": layer.slug, class: layer.count ? "" : "empty" },
        input, el("span", { class: "swatch", style: { background: layer.colour } }), layer.title,
        el("span", { class: "count" }, layer.count.toLocaleString("en")), zoom);
      panel.append(label);
    }
    for (const note of config.notes) panel.append(el("p", { class: "note" }, note));
    const credits = [...new Set(config.backgrounds.map((b) => b.credit).filter(Boolean))];
    if (credits.length) panel.append(el("p", { class: "note" }, "Credits: " + credits.join(" · ")));
    panel.append(el("p", { class: "note" }, "Click a feature for its properties" + (config.reasoning !== "none" ? " and the model's reasoning." : ".")));
  }

  function showBackground(id) {
    for (const background of config.backgrounds) {
      map.setLayoutProperty(background.id, "visibility", background.id === id ? "visible" : "none");
    }
  }

  function setLayerVisible(layer, visible) {
    for (const id of [layer.fill, layer.line]) map.setLayoutProperty(id, "visibility", visible ? "visible" : "none");
  }

  // ---- popups ---------------------------------------------------------------------------------------
  const byFill = Object.fromEntries(config.layers.map((layer) => [layer.fill, layer]));

  function formatArea(value) {
    const m2 = Number(value);
    if (!isFinite(m2)) return String(value);
    const text = Math.round(m2).toLocaleString("en") + " m²";
    return m2 >= 10000 ? text + " (" + (m2 / 10000).toFixed(2) + " ha)" : text;
  }

  function tilesText(value) {
    const tiles = String(value || "").split(/[;,]/).filter(Boolean);
    if (!tiles.length) return null;
    return tiles.length > 6 ? tiles.slice(0, 6).join(", ") + ", … (" + tiles.length + " tiles)" : tiles.join(", ");
  }

  const ROWS = [
    ["query", "Query", String],
    ["area_m2", "Area", formatArea],
    ["confidence", "Confidence", (v) => Number(v).toFixed(2)],
    ["name", "Name", String],
    ["socio_class", "Class", String],
    ["n_tiles", "Tiles", String],
    ["tiles", "Tile ids", tilesText],
    ["crosses_seam", "Crosses a seam", (v) => (v === true || v === "true" || v === 1 ? "yes" : "no")],
    ["osm_id", "OSM id", String],
    ["model", "Model", String],
    ["run_id", "Run", String],
  ];

  const TILE_FIELDS = new Set(["n_tiles", "tiles", "crosses_seam"]);

  function featureSection(feature, layer) {
    const props = feature.properties || {};
    const rows = el("table", {});
    const untiled = Number(props.n_tiles) === 0;  // OSM labels: tiles and seams do not apply
    for (const [key, label, format] of ROWS) {
      if (props[key] === undefined || props[key] === null || props[key] === "") continue;
      if (untiled && TILE_FIELDS.has(key)) continue;
      const text = format(props[key]);
      if (text === null) continue;
      rows.append(el("tr", { "data-field": key }, el("th", {}, label), el("td", {}, text)));
    }
    const section = el("div", { class: "feature", "data-layer": layer.slug },
      el("h3", {}, el("span", { class: "swatch", style: { background: layer.colour, width: "12px", height: "12px", display: "inline-block", border: "1px solid #333" } }), props.function || layer.title),
      rows);
    section.append(reasoningBlock(String(props.reasoning || "")));
    return section;
  }

  function entryBlock(entry) {
    const block = el("div", { class: "reasoning-entry" });
    for (const [key, label] of [["stage1_text", "Stage 1 (boxes)"], ["stage2_text", "Stage 2 (refined)"]]) {
      if (entry[key]) block.append(el("div", { class: "note" }, label), el("pre", { "data-text": key }, entry[key]));
    }
    if (!block.childNodes.length) block.append(el("p", { class: "note" }, entry.source === "osm" ? "OSM tags (no model text)." : "No text stored."));
    return block;
  }

  function reasoningBlock(pointers) {
    const box = el("div", { class: "reasoning" });
    const refs = pointers.split(";").map((p) => p.trim()).filter(Boolean);
    if (!refs.length) {
      const why = config.kind === "model" ? "No model text is stored for this feature." : "From OpenStreetMap tags: no model involved.";
      box.append(el("p", { class: "note" }, why));
      return box;
    }
    box.append(el("div", {}, el("strong", {}, "Model reasoning"), " (" + refs.length + " tile" + (refs.length > 1 ? "s" : "") + ")"));
    if (config.reasoning === "inline") {
      for (const ref of refs) box.append(config.texts[ref] ? entryBlock(config.texts[ref]) : el("p", { class: "note" }, "Not embedded: " + ref));
    } else if (config.reasoning === "api") {
      const waiting = el("p", { class: "note" }, "Loading…");
      box.append(waiting);
      fetch(location.origin + "/api/reasoning?pointers=" + encodeURIComponent(refs.join(";")))
        .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
        .then(({ ok, body }) => {
          waiting.remove();
          if (!ok) { box.append(el("p", { class: "note" }, body.error || "not found")); return; }
          for (const entry of body) box.append(entryBlock(entry));
        })
        .catch((err) => { waiting.textContent = "Could not load: " + err; });
    }
    return box;
  }

  map.on("click", (event) => {
    const visible = config.layers.filter((l) => map.getLayoutProperty(l.fill, "visibility") !== "none").map((l) => l.fill);
    const hits = visible.length ? map.queryRenderedFeatures(event.point, { layers: visible }) : [];
    if (state.popup) state.popup.remove();
    if (!hits.length) return;
    const seen = new Set();
    const content = el("div", { class: "sociomap-popup", id: "sociomap-popup" });
    for (const hit of hits) {
      const key = hit.layer.id + "|" + JSON.stringify(hit.properties);
      if (seen.has(key)) continue;  // one feature split over tiles shows once
      seen.add(key);
      content.append(featureSection(hit, byFill[hit.layer.id]));
    }
    state.popup = new maplibregl.Popup({ maxWidth: "380px" }).setLngLat(event.lngLat).setDOMContent(content).addTo(map);
  });

  buildPanel();
})();
