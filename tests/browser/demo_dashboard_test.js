// The dashboard on the demo's data in Debian's headless Chromium with playwright-core
// (docs/dashboard.md, "Tests"), run by tests/integration/demo_test.py after its traffic and a
// `meshctl apply` that updated TrafficPolicy default/reviews. Usage:
//   node demo_dashboard_test.js URL TOKEN SCREENSHOT_DIR
// Checks the graph's node colours against /api/v1/stat, the service page of reviews.default (its
// callers' and callees' figures against the API's, links to their pages, its workloads' sync
// state, its route rules' figures against /api/v1/stat/routes, a failed request whose link opens
// its explanation), and its charts (the service's and a route rule's): points, and the marker of
// that apply with who made it. Prints "PASS ..." and exits
// 0, or what went wrong and exits 1.
'use strict';
const {launch, gotoSteady, isNetworkChanged} = require('./browser_util');
const assert = require('assert');
const path = require('path');

const [url, token, shots] = process.argv.slice(2);
const SERVICE = 'reviews.default';

(async () => {
  const browser = await launch();
  const errors = [];
  try {
    // The API's certificate names the control plane's Service, not 127.0.0.1.
    const context = await browser.newContext({viewport: {width: 1400, height: 1000},
      ignoreHTTPSErrors: true});
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error' && !isNetworkChanged(m.text())) errors.push(m.text());
    });
    page.on('response', (r) => { if (r.status() === 404) errors.push('404 ' + r.url()); });
    const foreign = [];
    page.on('request', (r) => { if (!r.url().startsWith(url)) foreign.push(r.url()); });
    // The API as the page sees it, for the expected values.
    const apiGet = (p) => page.evaluate(async (p) => {
      const r = await fetch(p, {headers: {authorization: 'Bearer ' + sessionStorage.getItem('meshlet-token')}});
      return r.json();
    }, p);

    await gotoSteady(page, `${url}/dashboard/#token=${encodeURIComponent(token)}`);
    await page.waitForSelector('#window');
    await page.selectOption('#window', '10m');
    await page.waitForSelector(`#graph .node[data-service="${SERVICE}"]`, {timeout: 30000});

    // Node colours: each service's inbound success rate over the window, as the API gives it
    // (a sidecar's last report may land between the two reads: compare again after a redraw).
    const expectedHealth = (stat, n) => {
      const into = stat.items.filter((e) => e.destination === n.name);
      const requests = into.reduce((a, e) => a + e.requests, 0);
      const failures = into.reduce((a, e) => a + e.failures, 0);
      const sr = requests ? 1 - failures / requests : null;
      const want = sr === null ? 'muted' : sr >= 0.99 ? 'ok' : sr >= 0.95 ? 'warn' : 'bad';
      // Configuration problems turn a healthy node amber.
      return n.problems && want !== 'bad' ? 'warn' : want;
    };
    let nodes = [], mismatch = [];
    for (let attempt = 0; attempt < 4; attempt++) {
      if (attempt) await page.waitForTimeout(2500);
      const stat = await apiGet('/api/v1/stat?window=10m');
      nodes = await page.$$eval('#graph .node', (gs) => gs.map((g) =>
        ({name: g.dataset.service, health: g.dataset.health, problems: Number(g.dataset.problems),
          stroke: getComputedStyle(g.querySelector('rect')).stroke})));
      mismatch = nodes.filter((n) => n.health !== expectedHealth(stat, n))
          .map((n) => `${n.name}: ${n.health}, API: ${expectedHealth(stat, n)}`);
      if (!mismatch.length) break;
    }
    assert.deepStrictEqual(mismatch, [], JSON.stringify(nodes));
    const colours = new Set(nodes.filter((n) => n.health !== 'muted').map((n) => n.stroke));
    assert.ok(nodes.some((n) => n.health !== 'muted'), JSON.stringify(nodes));
    assert.ok(![...colours].includes('rgb(135, 149, 168)'), `coloured nodes: ${[...colours]}`);
    await page.screenshot({path: path.join(shots, 'demo-graph.png'), fullPage: true});

    // A node opens its service's page.
    await page.click(`#graph .node[data-service="${SERVICE}"]`);
    await page.waitForFunction((s) => location.hash === '#service/' + s, SERVICE);
    await page.waitForSelector('#svc-callers tbody tr[data-peer]');
    assert.strictEqual(await page.textContent('#svc-name'), SERVICE);
    // Callers and callees with the API's figures (the page refreshes every 10 s: wait for a
    // render of the same numbers).
    const edges = (await apiGet('/api/v1/stat?window=10m')).items;
    const callers = edges.filter((e) => e.destination === SERVICE);
    const callees = edges.filter((e) => e.source === SERVICE);
    assert.ok(callers.length && callees.length, JSON.stringify(edges));
    for (const [table, list, peerOf] of [['#svc-callers', callers, (e) => e.source],
      ['#svc-callees', callees, (e) => e.destination]]) {
      for (const e of list) {
        const want = (e.successRate * 100).toFixed(2) + '%';
        await page.waitForFunction(([sel, want]) => {
          const td = document.querySelector(sel);
          return td && td.textContent.trim() === want;
        }, [`${table} tr[data-peer="${peerOf(e)}"] td[data-field="successRate"]`, want], {timeout: 15000});
      }
    }
    const requests = callers.reduce((a, e) => a + e.requests, 0);
    await page.waitForFunction((n) =>
      document.querySelector('#svc-summary [data-field="requests"]').textContent === String(n),
    requests, {timeout: 15000});
    // Its workloads, with their proxies' sync state (STALE while the apply's push awaits its ACK).
    const workloads = () => page.$$eval('#svc-workloads tr[data-workload]', (rows) =>
      rows.map((r) => r.dataset.workload + ' ' + r.querySelector('[data-field="sync"]').textContent).sort());
    await page.waitForFunction(() => [...document.querySelectorAll('#svc-workloads [data-field="sync"]')]
        .filter((e) => e.textContent === 'SYNCED').length === 2, null, {timeout: 15000})
        .catch(async () => assert.fail(`workloads: ${await workloads()}`));
    assert.deepStrictEqual(await workloads(), ['reviews-v1-0 SYNCED', 'reviews-v2-0 SYNCED']);
    // The route rules that sent requests to it (HTTPRoute default/reviews: the canary header's
    // rule 0 and the split's rule 1), with the routes API's figures.
    const routes = (await apiGet(`/api/v1/stat/routes?service=${SERVICE}&window=10m`)).routes;
    assert.deepStrictEqual(routes.filter((r) => r.requests > 0).map((r) => `${r.route}#${r.rule}`).sort(),
        ['default/reviews#0', 'default/reviews#1'], JSON.stringify(routes));
    for (const r of routes) {
      const want = (r.successRate * 100).toFixed(2) + '%';
      await page.waitForFunction(([sel, want]) => {
        const td = document.querySelector(sel);
        return td && td.textContent.trim() === want;
      }, [`#svc-route-table tr[data-route="${r.route}"][data-rule="${r.rule}"] td[data-field="successRate"]`,
        want], {timeout: 15000}).catch(async () => assert.fail(`route ${r.route}#${r.rule}: ` +
          `${await page.textContent('#svc-routes')}, API ${want}`));
    }

    // The charts: points over the window, and the marker of the apply, saying who made it.
    await page.selectOption('#chart-window', '15m');
    await page.waitForFunction(() => Number(document.querySelector(
        '#svc-charts svg[data-metric="rps"]')?.dataset.points) > 0, null, {timeout: 15000});
    for (const m of ['rps', 'success', 'latency']) {
      const n = Number(await page.getAttribute(`#svc-charts svg[data-metric="${m}"]`, 'data-points'));
      assert.ok(n > 0, `${m} chart points: ${n}`);
    }
    const marker = '#svc-charts svg[data-metric="rps"] .marker.policy[data-kind="TrafficPolicy"]' +
        '[data-name="default/reviews"][data-verb="updated"]';
    await page.waitForSelector(marker, {timeout: 15000});
    const history = await apiGet(`/api/v1/stat/history?service=${SERVICE}&window=15m`);
    const applied = history.events.filter((e) => e.type === 'policy' && e.kind === 'TrafficPolicy' &&
        e.verb === 'updated');
    assert.strictEqual(applied.length, 1, JSON.stringify(history.events));
    assert.strictEqual(await page.getAttribute(marker, 'data-revision'), String(applied[0].revision));
    assert.strictEqual(await page.getAttribute(marker, 'data-who'), applied[0].who);
    await page.hover(marker);
    const detail = await page.textContent('#svc-charts .marker-detail');
    assert.match(detail, new RegExp(`TrafficPolicy default/reviews updated by ${applied[0].who}`), detail);
    await page.screenshot({path: path.join(shots, 'demo-service.png'), fullPage: true});

    // The split rule's own charts: points, and the same apply's marker (a rule's history lists
    // every change).
    const ruleSubject = 'route=default%2Freviews&rule=1';
    await page.selectOption('#chart-subject', ruleSubject);
    await page.waitForFunction((s) => document.querySelector('#svc-charts').dataset.subject === s,
        ruleSubject, {timeout: 15000});
    const ruleHistory = await apiGet('/api/v1/stat/history?route=default/reviews&rule=1&window=15m');
    const rulePoints = ruleHistory.points.filter((p) => p.requests > 0).length;
    assert.ok(rulePoints > 0, JSON.stringify(ruleHistory.points));
    assert.ok(Number(await page.getAttribute('#svc-charts svg[data-metric="rps"]', 'data-points')) > 0,
        'route rule chart points');
    await page.waitForSelector(marker, {timeout: 15000});
    await page.screenshot({path: path.join(shots, 'demo-route.png'), fullPage: true});

    // A recent failed request links to its explanation.
    await page.waitForSelector('#svc-failures tr[data-trace] a', {timeout: 15000});
    const traceId = await page.getAttribute('#svc-failures tr[data-trace]', 'data-trace');
    await page.click('#svc-failures tr[data-trace] a');
    await page.waitForFunction((id) => location.hash === '#trace/' + id, traceId);
    await page.waitForSelector('#explanation:not([hidden]) .verdict', {timeout: 15000});
    const verdict = await page.textContent('#explanation .verdict');
    assert.ok(verdict.length > 0);
    await page.screenshot({path: path.join(shots, 'demo-explain.png'), fullPage: true});

    // A callee's link opens its page.
    await page.goBack();
    await page.waitForSelector(`#svc-callees tr[data-peer="${callees[0].destination}"] a`);
    await page.click(`#svc-callees tr[data-peer="${callees[0].destination}"] a`);
    await page.waitForFunction((s) => document.querySelector('#svc-name').textContent === s,
        callees[0].destination);
    // Its callers: this service, linking back.
    await page.waitForSelector(`#svc-callers tr[data-peer="${SERVICE}"] a[href="#service/${SERVICE}"]`);

    assert.deepStrictEqual(foreign, [], 'requests outside the control plane');
    assert.deepStrictEqual(errors, [], 'errors in the page');
    console.log(`PASS demo dashboard: ${nodes.length} nodes, marker revision ${applied[0].revision}` +
        ` by ${applied[0].who}, trace ${traceId}: ${verdict}`);
  } catch (e) {
    console.log('FAIL', e && e.stack || e, errors.length ? '\npage errors: ' + errors.join('\n') : '');
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
