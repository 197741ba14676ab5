// The dashboard's Live tab (docs/dashboard.md): a service's or workload's requests as they
// happen, from GET /api/v1/tap (newline-delimited JSON, streamed). Its own section and state;
// app.js only calls liveTap.show() when the route is #live. Leaving the tab, Stop, or the
// tap's duration ends the stream (the control plane then stops the sidecars' taps).
'use strict';

const liveTap = (() => {
  const MAX_ROWS = 200;  // the table keeps the newest rows only
  const q = (sel) => document.querySelector(sel);
  const escape = (s) => String(s ?? '').replace(/[&<>"']/g,
      (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
  const bearer = () => sessionStorage.getItem('meshlet-token') || '';
  let controller = null;  // the running tap's AbortController
  let rows = 0;

  const section = document.createElement('section');
  section.id = 'view-live';
  section.className = 'view';
  section.hidden = true;
  section.innerHTML = `
  <form id="live-form" class="filters">
    <label>Target <select id="live-target" name="target"></select></label>
    <label>Rate/s <input id="live-rate" name="rate" size="4" value="10"></label>
    <label>Duration <input id="live-duration" name="duration" size="5" value="60s"></label>
    <label>Direction <select id="live-direction" name="direction"><option value="">any</option>
      <option value="inbound">inbound</option><option value="outbound">outbound</option></select></label>
    <label>Path prefix <input id="live-path" name="path" size="14" placeholder="/api"></label>
    <label class="check"><span>Headers (admin)</span><input id="live-headers" type="checkbox"></label>
    <button id="live-start">Start</button>
    <button id="live-stop" type="button" disabled>Stop</button>
  </form>
  <div id="live-state" class="legend">Pick a service or a workload and start: its sidecars send
  their requests as they happen, sampled at the rate, for the duration.</div>
  <div id="live-error" class="error" hidden></div>
  <table id="live-table" class="grid">
    <thead><tr><th>Time</th><th>Direction</th><th>Proxy</th><th>Method</th><th>Authority</th>
    <th>Path</th><th class="num">Status</th><th class="num">Latency</th><th>Caller</th>
    <th>Route</th></tr></thead>
    <tbody></tbody>
  </table>`;
  // Loaded after the page's sections (before app.js, which routes): placed after the last one.
  [...document.querySelectorAll('section.view')].pop().after(section);
  q('#live-form').addEventListener('submit', (ev) => { ev.preventDefault(); start(); });
  q('#live-stop').addEventListener('click', () => stop('stopped'));
  window.addEventListener('hashchange', () => {
    if (!location.hash.startsWith('#live')) stop('stopped: left the tab');
  });

  async function loadTargets() {
    const r = await fetch('/api/v1/proxies', {headers: {authorization: 'Bearer ' + bearer()}});
    if (!r.ok) return;
    const items = (await r.json()).items || [];
    const services = new Set();
    const options = [];
    for (const p of items) {
      if (p.service) services.add(`${p.namespace}/${p.service}`);
    }
    for (const s of [...services].sort()) {
      options.push(`<option value="service=${encodeURIComponent(s)}">service ${escape(s)}</option>`);
    }
    for (const p of items.slice().sort((a, b) => a.id.localeCompare(b.id))) {
      const pod = `${p.namespace}/${p.id}`;
      options.push(`<option value="workload=${encodeURIComponent(pod)}">workload ${escape(pod)}</option>`);
    }
    const select = q('#live-target');
    const chosen = select.value;
    select.innerHTML = options.join('');
    if (chosen) select.value = chosen;
  }

  function setRunning(running) {
    q('#live-start').disabled = running;
    q('#live-stop').disabled = !running;
  }

  function stop(why) {
    if (!controller) return;
    controller.abort();
    controller = null;
    setRunning(false);
    q('#live-state').textContent = why;
  }

  function addRow(e) {
    const body = q('#live-table tbody');
    const failed = e.status >= 500 || e.status === 0 || e.reset || e.error;
    const route = e.route ? `${e.route}${e.rule !== undefined ? '#' + e.rule : ''}` : '';
    const tr = document.createElement('tr');
    tr.className = 'live-row';
    tr.title = e.error || '';
    tr.innerHTML = `<td class="mono">${escape((e.time || '').slice(11, 23))}</td>
      <td>${escape(e.direction)}</td><td>${escape(e.proxy)}</td><td>${escape(e.method)}</td>
      <td>${escape(e.authority)}</td><td class="mono">${escape(e.path)}</td>
      <td class="num ${failed ? 'bad' : 'ok'}">${escape(e.status)}${e.reset ? ' reset' : ''}</td>
      <td class="num">${escape(Number(e.latencyMs).toFixed(2))} ms</td>
      <td class="mono">${escape(e.caller)}</td><td>${escape(route)}</td>`;
    body.prepend(tr);
    rows++;
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
  }

  function onLine(line) {
    let e;
    try { e = JSON.parse(line); } catch (err) { return; }
    if (e.kind === 'TapEvent') {
      addRow(e);
    } else if (e.kind === 'TapStarted') {
      q('#live-state').textContent = `tapping ${e.target} at ${e.rate}/s for ` +
          `${e.durationSeconds}s: ${(e.proxies || []).join(', ')}`;
    } else if (e.kind === 'TapReplica') {
      // Another control-plane replica's sidecars of the target (docs/control-plane.md).
      const part = e.status === 'started' ? (e.proxies || []).join(', ')
        : e.status === 'none' ? 'none' : `unreachable (${e.error})`;
      q('#live-state').textContent += `; replica ${e.replica}: ${part}`;
    } else if (e.kind === 'TapProxy' && e.status === 'refused') {
      q('#live-error').hidden = false;
      q('#live-error').textContent = `${e.proxy} refused the tap: ${e.error}`;
    } else if (e.kind === 'TapEnded') {
      const d = e.dropped || {};
      const over = (d.sidecarRate || 0) + (d.tapRate || 0) + (d.controlPlaneRate || 0);
      q('#live-state').textContent = `ended (${e.reason}): ${e.events} requests shown, ` +
          `${over} more over the rate`;
    }
  }

  async function start() {
    stop('restarting');
    q('#live-error').hidden = true;
    q('#live-table tbody').innerHTML = '';
    rows = 0;
    const params = new URLSearchParams();
    const [key, value] = q('#live-target').value.split('=');
    if (!key) return;
    params.set(key, decodeURIComponent(value));
    params.set('rate', q('#live-rate').value.trim() || '10');
    params.set('duration', q('#live-duration').value.trim() || '60s');
    if (q('#live-direction').value) params.set('direction', q('#live-direction').value);
    if (q('#live-path').value.trim()) params.set('path', q('#live-path').value.trim());
    if (q('#live-headers').checked) params.set('headers', 'true');
    const mine = new AbortController();
    controller = mine;
    setRunning(true);
    try {
      const r = await fetch('/api/v1/tap?' + params.toString(),
          {headers: {authorization: 'Bearer ' + bearer()}, signal: mine.signal});
      if (!r.ok) {
        const body = await r.json().catch(() => ({}));
        throw new Error(body.message || ('HTTP ' + r.status));
      }
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let pending = '';
      for (;;) {
        const {value: chunk, done} = await reader.read();
        if (done) break;
        pending += decoder.decode(chunk, {stream: true});
        let nl;
        while ((nl = pending.indexOf('\n')) >= 0) {
          onLine(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
        }
      }
      if (pending) onLine(pending);
    } catch (err) {
      if (err.name !== 'AbortError') {
        q('#live-error').hidden = false;
        q('#live-error').textContent = err.message;
      }
    } finally {
      if (controller === mine) {
        controller = null;
        setRunning(false);
      }
    }
  }

  return {
    show() { loadTargets().catch(() => {}); },
    rows: () => rows,
  };
})();
