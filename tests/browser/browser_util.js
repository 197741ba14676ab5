// What the browser tests share: launching Debian's Chromium and navigating in a way that survives
// the host's network interfaces changing underneath. Other tests of the suite create and delete
// podman networks and veth pairs while a browser test runs; Chromium then aborts a navigation in
// flight with net::ERR_NETWORK_CHANGED (and logs it for the page's own fetches), although the
// loopback address the tests use never changed. That error alone is retried; any other fails.
'use strict';
const {chromium} = require('playwright-core');

const NETWORK_CHANGED = /net::ERR_NETWORK_CHANGED/;

// Chromium headless, without a sandbox (the suite runs as root) or a GPU; `extraArgs` appended.
function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'].concat(extraArgs),
  });
}

// page.goto(url), repeated while Chromium reports only that the host's interfaces changed (at
// most `attempts` times, 250 ms apart). A navigation that loaded while one of the page's own
// files (a script, a style sheet) failed for that reason is reloaded the same way: the load
// event comes without the script, and nothing on the page would ever run.
async function gotoSteady(page, url, options = {}, attempts = 5) {
  let loaded = false;  // the last attempt loaded the page, without all of its files
  for (let i = 1; ; i++) {
    const failed = [];
    const onFailed = (request) => {
      const failure = request.failure();
      if (failure && NETWORK_CHANGED.test(failure.errorText)) failed.push(request.url());
    };
    page.on('requestfailed', onFailed);
    try {
      // After a load that lost a file, reload: the app may have rewritten the URL's fragment.
      const response = await (loaded ? page.reload(options) : page.goto(url, options));
      loaded = true;
      if (failed.length === 0 || i >= attempts) return response;
      console.log(`reloading ${url}: ${failed.join(', ')} failed as the host's interfaces ` +
                  `changed (attempt ${i} of ${attempts})`);
    } catch (e) {
      loaded = false;
      if (i >= attempts || !NETWORK_CHANGED.test(String(e))) throw e;
      console.log(`retrying ${url}: the host's interfaces changed (attempt ${i} of ${attempts})`);
    } finally {
      page.off('requestfailed', onFailed);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

// A console message that only says an interface changed (the page retries its reads).
function isNetworkChanged(text) {
  return NETWORK_CHANGED.test(text);
}

module.exports = {launch, gotoSteady, isNetworkChanged};
