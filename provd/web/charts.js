// Small SVG charts built node by node (dom.js's svgEl: createElementNS and
// setAttribute, never markup, so the strict CSP and Trusted Types hold). Colors come
// from classes in style.css, so the charts follow the light and dark themes.
//
// Both charts take `points`: [{ at: Date, ... }], one per bucket, oldest first, and
// draw into a fixed viewBox that scales to the width of its box.

import { svgEl as svg } from "./dom.js";

const WIDTH = 560;
const HEIGHT = 180;
const LEFT = 34; // room for the value labels
const RIGHT = 22; // room for the last time label
const TOP = 10;
const BOTTOM = 22; // room for the time labels
const PLOT_W = WIDTH - LEFT - RIGHT;
const PLOT_H = HEIGHT - TOP - BOTTOM;

const pad = (n) => String(n).padStart(2, "0");

// "14:05" in the browser's time zone.
export function clock(date) {
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

// A round ceiling for the value axis: 1, 2, 5, 10, 20, 50, …
function niceMax(value) {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

// The frame every chart shares: the value axis (0 and its top), the time labels
// (about five, on whole buckets), and the <svg> with its accessible name.
function frame(points, top, label, ...marks) {
  const slot = PLOT_W / Math.max(points.length, 1);
  const every = Math.max(1, Math.ceil(points.length / 6));
  const times = points
    .map((point, index) => ({ point, index }))
    .filter(({ index }) => (points.length - 1 - index) % every === 0)
    .map(({ point, index }) =>
      svg(
        "text",
        { x: LEFT + slot * (index + 0.5), y: HEIGHT - 6, class: "chart-label", "text-anchor": "middle" },
        clock(point.at),
      ),
    );
  return svg(
    "svg",
    { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": label },
    svg("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: TOP, y2: TOP, class: "chart-grid" }),
    svg("line", {
      x1: LEFT,
      x2: WIDTH - RIGHT,
      y1: TOP + PLOT_H,
      y2: TOP + PLOT_H,
      class: "chart-axis",
    }),
    svg("text", { x: LEFT - 6, y: TOP + 4, class: "chart-label", "text-anchor": "end" }, top),
    svg("text", { x: LEFT - 6, y: TOP + PLOT_H, class: "chart-label", "text-anchor": "end" }, 0),
    ...marks,
    ...times,
  );
}

const y = (value, top) => TOP + PLOT_H - (value / top) * PLOT_H;

// Stacked bars: for each point, one segment per series ({ key, name }) with its
// value point[key], bottom up, each with the class `bar-<key>` and a tooltip.
export function stackedBars(points, series, label) {
  const top = niceMax(Math.max(0, ...points.map((p) => series.reduce((s, { key }) => s + p[key], 0))));
  const slot = PLOT_W / Math.max(points.length, 1);
  const width = Math.max(1, slot * 0.75);
  const bars = points.map((point, index) => {
    let base = 0;
    const segments = [];
    for (const { key } of series) {
      if (!point[key]) continue;
      segments.push(
        svg("rect", {
          x: LEFT + slot * index + (slot - width) / 2,
          y: y(base + point[key], top),
          width,
          height: (point[key] / top) * PLOT_H,
          class: `bar bar-${key}`,
        }),
      );
      base += point[key];
    }
    const words = series.map(({ key, name }) => `${point[key]} ${name}`).join(", ");
    // The whole slot answers the pointer, so a bar of one job is easy to hover.
    return svg(
      "g",
      {},
      svg("rect", { x: LEFT + slot * index, y: TOP, width: slot, height: PLOT_H, class: "chart-hit" }),
      ...segments,
      svg("title", {}, `${clock(point.at)}: ${words}`),
    );
  });
  return frame(points, top, label, ...bars);
}

// A line over a filled area: point[key] at the end of each bucket (the right edge of
// its slot), with the classes `area-<key>` and `line-<key>`.
export function areaLine(points, key, name, label) {
  const top = niceMax(Math.max(0, ...points.map((p) => p[key])));
  const slot = PLOT_W / Math.max(points.length, 1);
  const coordinates = points.map((point, index) => [LEFT + slot * (index + 1), y(point[key], top)]);
  const path = coordinates.map(([x, v]) => `${x.toFixed(1)},${v.toFixed(1)}`).join(" ");
  const first = coordinates.length ? coordinates[0][0] : LEFT;
  const last = coordinates.length ? coordinates[coordinates.length - 1][0] : LEFT;
  const floor = TOP + PLOT_H;
  const dots = points.map((point, index) =>
    svg(
      "circle",
      { cx: coordinates[index][0], cy: coordinates[index][1], r: 1.5, class: `dot-${key}` },
      svg("title", {}, `${clock(point.at)}: ${point[key]} ${name}`),
    ),
  );
  return frame(
    points,
    top,
    label,
    svg("polygon", {
      points: `${first.toFixed(1)},${floor} ${path} ${last.toFixed(1)},${floor}`,
      class: `area-${key}`,
    }),
    svg("polyline", { points: path, class: `line-${key}` }),
    ...dots,
  );
}
