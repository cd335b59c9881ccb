// The run graph: laid out by dagre (shipped beside this file), drawn as SVG, redrawn
// from server-sent events whenever the run changes. No other library, no network.
"use strict";
window.perperGraph = (function () {
  const NODE_W = 200, NODE_H = 58, LABEL_W = 120, LABEL_H = 18;
  const SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(n) { return Number(n).toLocaleString("en-US"); }

  function edgeLabel(edge) {
    let text = fmt(edge.items) + " items";
    if (edge.lag !== null && edge.lag > 0) text += ", " + fmt(edge.lag) + " behind";
    return text;
  }

  function countText(node) {
    if (node.kind === "caller") return "calls from another run";
    if (node.kind === "agent") return "agent · " + node.status;
    const unit = node.kind === "calls" ? " calls · " : " items · ";
    return fmt(node.items) + unit + node.status;
  }

  function href(node) {
    const q = encodeURIComponent(node.id);
    if (node.kind === "agent") return "/run?name=" + q;
    if (node.kind === "calls") return "#executions";
    return node.kind === "ingest" ? "/stream?name=" + q : "/execution?id=" + q;
  }

  function draw(svg, data) {
    const g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: "LR", nodesep: 30, ranksep: 90, marginx: 16, marginy: 16 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const node of data.nodes) g.setNode(node.id, { width: NODE_W, height: NODE_H, data: node });
    // Stream reads, calls and agents shape the layout; who started which stream is on
    // the execution pages (drawing those edges too tangles every graph around its
    // launcher).
    data.edges.forEach((edge, i) => {
      if (edge.kind === "start") return;
      const label = edge.kind === "read" ? { width: LABEL_W, height: LABEL_H, labelpos: "c" } : {};
      g.setEdge(edge.source, edge.target, Object.assign(label, { data: edge }), "e" + i);
    });
    dagre.layout(g);
    const size = g.graph();
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("width", Math.max(size.width, 200));
    svg.setAttribute("height", Math.max(size.height, 80));
    svg.setAttribute("viewBox", "0 0 " + Math.max(size.width, 200) + " " + Math.max(size.height, 80));
    const defs = el("defs");
    const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" });
    marker.appendChild(el("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }));
    defs.appendChild(marker);
    svg.appendChild(defs);
    for (const e of g.edges()) {
      const edge = g.edge(e);
      const points = edge.points;
      let d = "M " + points[0].x + " " + points[0].y;
      for (let i = 1; i < points.length; i++) d += " L " + points[i].x + " " + points[i].y;
      const group = el("g", { class: "edge " + edge.data.kind, "data-source": e.v,
        "data-target": e.w, "data-stream": edge.data.stream });
      group.appendChild(el("path", { d: d, "marker-end": "url(#arrow)" }));
      svg.appendChild(group);
      if (edge.data.kind !== "read") continue;
      group.appendChild(el("rect", { class: "edge-label-bg", x: edge.x - LABEL_W / 2,
        y: edge.y - LABEL_H / 2, width: LABEL_W, height: LABEL_H, rx: 3 }));
      group.appendChild(el("text", { class: "edge-label", x: edge.x, y: edge.y + 4 },
        edgeLabel(edge.data)));
    }
    for (const id of g.nodes()) {
      const box = g.node(id);
      const node = box.data;
      const link = el("a", { href: href(node) });
      const group = el("g", { class: "node " + node.kind + " " + node.status,
        "data-id": node.id, "data-status": node.status, "data-items": node.items,
        transform: "translate(" + (box.x - NODE_W / 2) + "," + (box.y - NODE_H / 2) + ")" });
      group.appendChild(el("rect", { width: NODE_W, height: NODE_H, rx: 6 }));
      group.appendChild(el("text", { class: "fn", x: 10, y: 20 }, node.function));
      group.appendChild(el("text", { class: "count", x: 10, y: 38 }, countText(node)));
      group.appendChild(el("text", { class: "id", x: 10, y: 52 },
        node.id.length > 30 ? "…" + node.id.slice(-29) : node.id));
      const title = el("title", {}, node.id + " (" + node.kind + ")");
      group.appendChild(title);
      link.appendChild(group);
      svg.appendChild(link);
    }
  }

  function update(data) {
    const svg = document.getElementById("graph");
    draw(svg, data);
    const status = document.getElementById("run-status");
    if (status) { status.textContent = data.status; status.className = "status " + data.status; }
    for (const node of data.nodes) {
      const row = document.querySelector('#executions-body tr[data-id="' + CSS.escape(node.id) + '"]');
      if (!row) continue;
      const badge = row.querySelector(".status");
      badge.textContent = node.status;
      badge.className = "status " + node.status;
      row.querySelector(".items").textContent = fmt(node.items);
    }
    svg.dataset.updates = String(Number(svg.dataset.updates || 0) + 1);
  }

  function start(initial, eventsUrl) {
    update(initial);
    const live = document.getElementById("live");
    if (!window.EventSource) return;
    const source = new EventSource(eventsUrl);
    source.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data) update(data);
      if (live) live.className = "live on";
    };
    source.onerror = () => { if (live) live.className = "live off"; };
  }

  return { start: start, draw: draw };
})();
