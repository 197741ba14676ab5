// Charts of the golden-metrics history (GET /api/v1/stat/history, docs/dashboard.md): requests/s,
// success rate and p50/p95/p99 over time as hand-drawn SVG, with the configuration changes of the
// answer's `events` as markers. Loaded before app.js, whose helpers (esc, fmtMs, ...) it uses when
// called. A point without requests is a gap in every line, never a zero.
'use strict';

const CHART_W = 560, CHART_H = 170, PAD = {l: 52, r: 12, t: 14, b: 24};

// The series each chart draws: [name, value of a point (null: gap), colour].
const CHART_METRICS = {
  rps: {title: 'Requests/s', series: [['rps', (p) => p.rps, '#2f6fdb']], fmt: (v) => fmtRate(v)},
  success: {title: 'Success rate', series: [['success', (p) => p.successRate, '#2e9d57']],
            fmt: (v) => fmtPct(v), max: 1},
  latency: {title: 'Latency', fmt: (v) => fmtMs(v), series: [
    ['p50', (p) => p.latencyMs.p50, '#20a387'], ['p95', (p) => p.latencyMs.p95, '#e07b39'],
    ['p99', (p) => p.latencyMs.p99, '#d3342f']]},
};

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtClock(seconds, span) {
  const d = new Date(seconds * 1000);
  const hm = d.toTimeString().slice(0, 5);
  return span <= 600 ? hm + ':' + d.toTimeString().slice(6, 8) : hm;
}

// What a marker says: who changed what, or which version went to how many proxies.
function describeEvent(e) {
  const when = new Date(e.time * 1000).toLocaleTimeString();
  if (e.type === 'push') {
    return `${when}: configuration version ${e.revision} pushed to ${e.proxies} proxies`;
  }
  const who = e.whoKnown ? `by ${e.who || 'no token'}${e.role ? ' (' + e.role + ')' : ''}`
                         : 'by (recorded by the replica that took the write)';
  const scope = (e.services || []).length ? e.services.join(', ') : 'every service';
  return `${when}: ${e.kind} ${e.namespace ? e.namespace + '/' : ''}${e.name} ${e.verb} ${who}` +
      ` · revision ${e.revision} · concerns ${scope}`;
}

// One chart of `metric` over `history` (an answer of /api/v1/stat/history) into `svg`.
function drawChart(svg, metric, history) {
  const spec = CHART_METRICS[metric];
  const pts = history.points || [];
  const step = history.stepSeconds || 10;
  const x0 = history.from, x1 = Math.max(history.to, history.from + step);
  const has = (p) => p.requests > 0;
  let max = spec.max || 0;
  if (!spec.max) {
    for (const p of pts) if (has(p)) for (const [, get] of spec.series) max = Math.max(max, get(p) || 0);
    max = niceMax(max);
  }
  const W = CHART_W, H = CHART_H, iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  const X = (t) => PAD.l + (t - x0) / (x1 - x0) * iw;
  const Y = (v) => PAD.t + ih - Math.min(1, v / max) * ih;
  const parts = [`<text class="chart-title" x="${PAD.l}" y="10">${esc(spec.title)}</text>`];
  for (let i = 0; i <= 4; i++) {
    const v = max * i / 4, y = Y(v);
    parts.push(`<line class="grid" x1="${PAD.l}" x2="${W - PAD.r}" y1="${y}" y2="${y}"/>` +
        `<text class="axis" x="${PAD.l - 4}" y="${y + 4}" text-anchor="end">${esc(spec.fmt(v))}</text>`);
  }
  for (let i = 0; i <= 4; i++) {
    const t = x0 + (x1 - x0) * i / 4;
    parts.push(`<text class="axis" x="${X(t)}" y="${H - 6}" text-anchor="${i === 0 ? 'start' :
        i === 4 ? 'end' : 'middle'}">${esc(fmtClock(t, x1 - x0))}</text>`);
  }
  let drawn = 0;
  for (const [name, get, color] of spec.series) {
    // A path per run of points with requests: a point without any ends the run (a gap).
    let d = '', run = 0, dots = [];
    for (const p of pts) {
      const v = has(p) ? get(p) : null;
      if (v === null || v === undefined) { run = 0; continue; }
      const x = X(p.time + step / 2), y = Y(v);
      d += (run++ ? 'L' : 'M') + x.toFixed(1) + ',' + y.toFixed(1);
      dots.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="${run === 1 ? 1.8 : 1.2}"
        fill="${color}"><title>${esc(fmtClock(p.time, 0))} ${name} ${esc(spec.fmt(v))} (${p.requests}
        requests)</title></circle>`);
      drawn++;
    }
    parts.push(`<path class="line" data-series="${name}" d="${d}" stroke="${color}"/>`, ...dots);
  }
  // Markers: policy changes as a line with a flag, pushed versions as a tick on the axis.
  for (const e of history.events || []) {
    if (e.time < x0 || e.time > x1) continue;
    const x = X(e.time).toFixed(1);
    if (e.type === 'push') {
      parts.push(`<g class="marker push" data-revision="${e.revision}"><line x1="${x}" x2="${x}"
        y1="${PAD.t + ih - 6}" y2="${PAD.t + ih}"/><title>${esc(describeEvent(e))}</title></g>`);
    } else {
      parts.push(`<g class="marker policy" tabindex="0" data-kind="${esc(e.kind)}"
        data-name="${esc(e.namespace ? e.namespace + '/' + e.name : e.name)}" data-verb="${esc(e.verb)}"
        data-revision="${e.revision}" data-who="${esc(e.who || '')}"><rect class="hit" x="${x - 5}"
        y="${PAD.t - 8}" width="10" height="${ih + 8}"/><line x1="${x}" x2="${x}"
        y1="${PAD.t}" y2="${PAD.t + ih}"/><path d="M${x},${PAD.t - 2}l5,-6h-10z"/>
        <title>${esc(describeEvent(e))}</title></g>`);
    }
  }
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.dataset.points = String(drawn);
  svg.innerHTML = parts.join('') + (drawn ? '' : `<text class="axis" x="${PAD.l + iw / 2}"
      y="${PAD.t + ih / 2}" text-anchor="middle">no requests in this window</text>`);
}

// The three charts of one subject (a query string of /api/v1/stat/history: service=S,
// edge=A,B or route=NS/NAME&rule=N) over `range` ({window} or {from, to}) into `box`, markers
// explained in `box`'s .marker-detail on a click.
async function loadCharts(box, subject, range) {
  const q = new URLSearchParams(subject);
  if (range.from) { q.set('from', range.from); q.set('to', range.to); } else q.set('window', range.window);
  let history;
  try {
    history = await api('/api/v1/stat/history?' + q.toString());
  } catch (e) {
    box.innerHTML = `<div class="empty">History unavailable: ${esc(e.message)}</div>`;
    return null;
  }
  box.innerHTML = Object.keys(CHART_METRICS).map((m) =>
    `<svg class="chart" data-metric="${m}" role="img" aria-label="${m}"></svg>`).join('') +
    '<div class="marker-detail" hidden></div>';
  for (const m of Object.keys(CHART_METRICS)) drawChart(box.querySelector(`svg[data-metric="${m}"]`), m, history);
  box.dataset.subject = subject;
  const detail = box.querySelector('.marker-detail');
  box.querySelectorAll('.marker.policy').forEach((g) => {
    const show = () => {
      detail.textContent = g.querySelector('title').textContent;
      detail.hidden = false;
    };
    g.addEventListener('click', show);
    g.addEventListener('mouseenter', show);
  });
  return history;
}
