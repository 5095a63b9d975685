// Annotations drawn over images: boxes with their class names (the COCO/YOLO import's `boxes` and
// `categories` columns, or any columns of that shape) and segmentation polygons, as an SVG laid over
// the picture. The SVG's viewBox is the original image's pixel grid (the annotations' coordinates),
// so a thumbnail of any size, drawn "contain" in its tile, gets its boxes at the right place.

const SVG = "http://www.w3.org/2000/svg";
const BOXES = /^list<item: list<item: (float|double)>>$/;
const POLYGONS = /^list<item: list<item: list<item: (float|double)>>>$/;
const NAMES = /^list<item: (string|large_string)>$/;

/** Which columns of a table hold annotations: {boxes, categories, segmentation} (names or null). */
export function annotationColumns(info) {
  const pick = (preferred, re) => {
    const found = info.schema.find((c) => c.name === preferred && re.test(c.type)) || info.schema.find((c) => re.test(c.type));
    return found ? found.name : null;
  };
  const boxes = pick("boxes", BOXES);
  if (!boxes) return null;
  return { boxes, categories: pick("categories", NAMES), segmentation: pick("segmentation", POLYGONS) };
}

/** The columns a view must read to draw a row's annotations. */
export function overlayColumns(cols) {
  return cols ? [cols.boxes, cols.categories, cols.segmentation, "width", "height"].filter(Boolean) : [];
}

// a colour per class name, the same everywhere
const PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#fabebe"];
function colour(name) {
  let hash = 0;
  for (const ch of String(name)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

function el(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/** An SVG drawing a row's annotations over its image, or null when it has none (or no size).
 * `polygons`: draw segmentation too (the row page); `fit`: "meet" over a contain-drawn tile, "none"
 * over an element with the image's own aspect ratio. */
export function overlay(row, cols, { polygons = false, fit = "meet" } = {}) {
  const boxes = cols && row[cols.boxes];
  const w = Number(row.width);
  const h = Number(row.height);
  if (!Array.isArray(boxes) || !boxes.length || !(w > 0) || !(h > 0)) return null;
  const names = (cols.categories && row[cols.categories]) || [];
  const svg = el("svg", { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: `xMidYMid ${fit}`, class: "overlay",
    role: "img", "aria-label": `${boxes.length} annotation${boxes.length === 1 ? "" : "s"}: ${[...new Set(names)].join(", ")}` });
  const font = Math.max(w, h) / 18;
  boxes.forEach((box, i) => {
    if (!Array.isArray(box) || box.length !== 4) return;
    const [x, y, bw, bh] = box.map(Number);
    const name = names[i] ?? "";
    const stroke = colour(name);
    const group = el("g", { class: "annotation", "data-category": name });
    const title = el("title", {});
    title.textContent = `${name} [${box.map((v) => Math.round(v)).join(", ")}]`;
    group.append(title, el("rect", { x, y, width: bw, height: bh, fill: "none", stroke, "stroke-width": 2,
      "vector-effect": "non-scaling-stroke", class: "box" }));
    if (polygons && cols.segmentation && Array.isArray(row[cols.segmentation]?.[i])) {
      for (const poly of row[cols.segmentation][i]) {
        if (!Array.isArray(poly) || poly.length < 6) continue;
        const points = [];
        for (let k = 0; k + 1 < poly.length; k += 2) points.push(`${poly[k]},${poly[k + 1]}`);
        group.append(el("polygon", { points: points.join(" "), fill: stroke, "fill-opacity": 0.3, stroke,
          "stroke-width": 1, "vector-effect": "non-scaling-stroke", class: "segment" }));
      }
    }
    if (name) {
      const label = el("text", { x: x + font * 0.2, y: Math.max(font, y - font * 0.25), "font-size": font, fill: stroke,
        stroke: "#000", "stroke-width": font / 12, "paint-order": "stroke", class: "label" });
      label.textContent = name;
      group.append(label);
    }
    svg.append(group);
  });
  return svg;
}
