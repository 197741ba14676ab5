// Drives the dashboard's Live tab (docs/dashboard.md "Live") in Debian's headless Chromium with
// playwright-core, while the caller sends traffic. Usage:
//   node tap_test.js URL TOKEN SCREENSHOT_DIR SPKI CALLER [EXPECT_JSON]
// CALLER: the SPIFFE id the rows must name. Without EXPECT_JSON: tap_test.py's mesh (service
// default/backend, inbound rows from frontend to backend-0). EXPECT_JSON overrides what is tapped
// and what the rows must show (demo_test.py's frontend's outbound calls through HTTPRoute
// default/reviews): {target, direction, proxies, authority, path, status, route, shot}, where
// path, status and route are regular expressions. Prints "PASS live" and exits 0, or what went
// wrong and exits 1.
'use strict';
const {launch, gotoSteady} = require('./browser_util');
const assert = require('assert');
const path = require('path');

const [url, token, shots, spki, caller, expectJson] = process.argv.slice(2);
const want = Object.assign({
  target: 'service=default%2Fbackend', direction: '', proxies: 'backend-0', proxy: 'backend-0',
  cellDirection: 'inbound', authority: 'backend:9080', path: '^/hello/\\d+\\?q=1$',
  status: '^200$', route: '', shot: 'dashboard-live.png',
}, expectJson ? JSON.parse(expectJson) : {});
const targetName = decodeURIComponent(want.target).replace('=', ' ');

(async () => {
  const browser = await launch([`--ignore-certificate-errors-spki-list=${spki}`]);
  const errors = [];
  try {
    const page = await browser.newPage({viewport: {width: 1500, height: 800}});
    page.on('pageerror', (e) => errors.push(String(e)));
    const foreign = [];
    page.on('request', (r) => { if (!r.url().startsWith(url)) foreign.push(r.url()); });

    await gotoSteady(page, `${url}/dashboard/#live&token=${encodeURIComponent(token)}`);
    await page.waitForSelector('#view-live:not([hidden])');
    assert.ok(await page.$('nav a.active[data-view="live"]'), 'the Live tab is the active one');
    // The targets come from the connected proxies: the service and each workload.
    await page.waitForSelector(`#live-target option[value="${want.target}"]`, {state: 'attached'});
    await page.selectOption('#live-target', want.target);
    await page.selectOption('#live-direction', want.direction);
    await page.fill('#live-rate', '20');
    await page.fill('#live-duration', '20s');
    await page.click('#live-start');
    await page.waitForSelector('#live-table tbody tr.live-row', {timeout: 20000});
    await page.waitForFunction(
        () => document.querySelectorAll('#live-table tbody tr.live-row').length >= 5,
        null, {timeout: 20000});
    const state = await page.textContent('#live-state');
    assert.ok(state.includes(`tapping ${targetName} at 20/s for 20s: ${want.proxies}`), state);
    const table = await page.$$eval('#live-table tbody tr.live-row',
        (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText.trim())));
    for (const cells of table) {
      const row = cells.join(' | ');
      assert.strictEqual(cells[1], want.cellDirection, row);
      assert.strictEqual(cells[2], want.proxy, row);
      assert.strictEqual(cells[3], 'GET', row);
      assert.strictEqual(cells[4], want.authority, row);
      assert.match(cells[5], new RegExp(want.path), row);
      assert.match(cells[6], new RegExp(want.status), row);
      assert.match(cells[7], /^\d+\.\d\d ms$/, row);
      assert.strictEqual(cells[8], caller, row);
      if (want.route) assert.match(cells[9], new RegExp(want.route), row);
    }
    await page.screenshot({path: path.join(shots, want.shot), fullPage: true});

    // Stop: the stream ends and no row comes after.
    await page.click('#live-stop');
    await page.waitForFunction(() => document.querySelector('#live-start').disabled === false);
    assert.match(await page.textContent('#live-state'), /^stopped/);
    const rows = await page.$$eval('#live-table tbody tr.live-row', (r) => r.length);
    assert.ok(rows <= 200, `rows bounded: ${rows}`);
    await page.waitForTimeout(1500);
    assert.strictEqual(await page.$$eval('#live-table tbody tr.live-row', (r) => r.length), rows,
        'no row after Stop');

    assert.deepStrictEqual(foreign, [], 'requests to other origins');
    assert.deepStrictEqual(errors, [], 'page errors');
    console.log(`PASS live (${rows} rows)`);
  } catch (e) {
    console.log(String(e.stack || e));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
