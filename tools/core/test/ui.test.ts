/**
 * `distill ui` end to end in a real browser: Debian's chromium, headless, driven by playwright-core,
 * against a server this test starts on 127.0.0.1 (a free port). A pipeline runs while the page is
 * open: the DAG shows a stage running, then ran; a click shows its key and log; a second run with a
 * changed parameter appears in the runs table (filterable), its loss curves overlay the first
 * run's, and the diff view shows the changed metric and parameter.
 *
 * Skipped, saying so, only where no chromium is installed (.ci/run installs it with apt-get).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startUiServer, type UiServer } from '../src/ui/server.js';
import { Workspace } from '../src/runner/workspace.js';
import {
  concatStage,
  load,
  MARKER,
  makeProject,
  pipelineYaml,
  readJournal,
  runCli,
  startCli,
  waitFor,
  writeText,
} from './helpers.js';

const CHROMIUM = process.env.DISTILL_CHROMIUM ?? '/usr/bin/chromium';
const noBrowser = existsSync(CHROMIUM)
  ? false
  : `no browser at ${CHROMIUM} (apt-get install chromium, or set DISTILL_CHROMIUM): the UI browser test is skipped`;
if (noBrowser) process.stdout.write(`# ${noBrowser}\n`);

/** The text of every element matching `selector`. */
const texts = (page: Page, selector: string): Promise<string[]> => page.locator(selector).allTextContents();

/** Vertices of each line drawn in the curve panel (vega's SVG: one path "M x,y L x,y ..." per series). */
async function curvePoints(page: Page): Promise<number[]> {
  const paths = await page
    .locator('#curve g.mark-line path')
    .evaluateAll((els) => els.map((e) => e.getAttribute('d') ?? ''));
  return paths.map((d) => (d.match(/[ML]/g) ?? []).length);
}

test('distill ui: live DAG status, stage details, runs table, overlaid curves, run diff', {
  skip: noBrowser,
  timeout: 180_000,
}, async () => {
  const root = makeProject('distill-ui-');
  const journal = join(root, 'journal.txt');
  const release = join(root, 'release');
  // a (5 loss steps) -> b (held running until `release` exists) -> c.
  const file = writeText(
    root,
    'pipelines/p.yaml',
    pipelineYaml([
      concatStage('a', { text: 'A' }),
      concatStage('b', { text: 'B', journal, waitFile: release }, { inputs: { x: 'a' }, plugin: MARKER }),
      concatStage('c', { text: 'C' }, { inputs: { x: 'b' } }),
      // A stand-in for an eval stage: report.json listing one plot.
      [
        '  report:',
        '    plugin: exec',
        '    needs: [c]',
        '    with:',
        `      command: ["sh", "-c", ${JSON.stringify(`printf '{"plots": ["curve.svg"]}' > "$DISTILL_OUT/report.json"; printf '# Report\\nall good\\n' > "$DISTILL_OUT/report.md"; printf '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="green"/></svg>' > "$DISTILL_OUT/curve.svg"`)}]`,
        '      outputs: [report.json, report.md, curve.svg]',
      ].join('\n'),
    ]),
  );
  let ui: UiServer | undefined;
  let browser: Browser | undefined;
  try {
    ui = await startUiServer({ ws: new Workspace(root), load: (f) => load(f), host: '127.0.0.1', port: 0 });
    assert.match(ui.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const first = startCli(['run', file, '--quiet', '--json'], { cwd: root });
    await waitFor(
      () => readJournal(journal).some((l) => l.event === 'start' && l.stage === 'b'),
      30_000,
      'stage b to start',
    );

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${ui.url}?pipeline=p`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });

    // While b runs: a ran, b running, c waits.
    const node = (id: string) => `#dag g.node[data-stage="${id}"]`;
    await page.waitForSelector(`${node('b')}[data-status="running"]`, { timeout: 15_000 });
    assert.equal(await page.getAttribute(node('a'), 'data-status'), 'ran');
    assert.equal(await page.getAttribute(node('c'), 'data-status'), 'pending');
    assert.match((await page.textContent('#run-status')) ?? '', /running/);
    await page.click(node('b'));
    await page.waitForSelector('#stage-title:text("b")');
    assert.match((await page.textContent('[data-fact="key"]')) ?? '', /^[0-9a-f]{64}$/);
    assert.equal(await page.textContent('[data-fact="reason"]'), 'never ran');
    assert.match((await page.textContent('#stage-params')) ?? '', /"text": "B"/);

    // Released: the page catches up by itself (polling), b and c ran.
    writeText(root, 'release', '');
    assert.equal((await first.result).code, 0);
    await page.waitForSelector(`${node('c')}[data-status="ran"]`, { timeout: 15_000 });
    assert.equal(await page.getAttribute(node('b'), 'data-status'), 'ran');
    await page.click(node('b'));
    await page.waitForSelector('#stage-log:has-text("marker b writing")', { timeout: 10_000 });

    // A second run with c's text changed: c reruns, a and b come from the cache.
    const second = await runCli(['run', file, '--quiet', '--set', 'c.text=CC'], { cwd: root, timeoutMs: 60_000 });
    assert.equal(second.code, 0, second.stderr);
    await page.waitForSelector(`${node('a')}[data-status="cached"]`, { timeout: 15_000 });
    await page.click('nav button[data-view="runs"]');
    // The table follows the runs by itself (it reloads when the latest run's status changes).
    await page.waitForSelector('#runs tr[data-run] td:last-child:text-is(\'c.text="CC"\')', { timeout: 10_000 });
    const changed = await texts(page, '#runs tr[data-run] td:last-child');
    assert.deepEqual(changed, ['c.text="CC"', '']);
    await page.fill('#filter-text', 'c.text');
    assert.equal(await page.locator('#runs tr[data-run]').count(), 1);
    await page.fill('#filter-text', '');
    await page.selectOption('#filter-status', 'failed');
    assert.equal(await page.locator('#runs tr[data-run]').count(), 0);
    await page.selectOption('#filter-status', '');

    // Curves: a's loss in both runs (the second served a from the cache: the producing run's
    // steps), 5 steps each, overlaid.
    await page.click('nav button[data-view="curves"]');
    await page.waitForSelector('#curve g.mark-line path', { timeout: 15_000 });
    await page.selectOption('#curve-stage', 'a');
    await page.selectOption('#curve-metric', 'loss');
    await page.waitForFunction("document.querySelectorAll('#curve g.mark-line path').length === 2", undefined, {
      timeout: 10_000,
    });
    assert.deepEqual(await curvePoints(page), [5, 5]);
    assert.equal(await page.getAttribute('#curve', 'data-points'), '10');

    // Reports: the report stage's plot, served from out/, loads as an image; its Markdown shows.
    await page.click('nav button[data-view="reports"]');
    await page.waitForSelector('#reports .report[data-stage="report"] img', { timeout: 10_000 });
    await page.waitForFunction(
      "(() => { const img = document.querySelector('#reports img'); return img && img.complete && img.naturalWidth === 40; })()",
      undefined,
      { timeout: 10_000 },
    );
    await page.waitForSelector('#reports pre.markdown:has-text("all good")', { timeout: 10_000 });

    // Diff: previous run (A) against the last (B).
    await page.click('nav button[data-view="diff"]');
    await page.waitForSelector('#diff-metrics tr[data-name="c.length"]', { timeout: 10_000 });
    assert.deepEqual(await texts(page, '#diff-metrics tr[data-name="c.length"] td'), ['c.length', '5', '6', '+1']);
    assert.deepEqual(await texts(page, '#diff-params tr[data-name="c.text"] td'), ['c.text', '"C"', '"CC"']);
    assert.equal(
      await page.locator('#diff-metrics tr[data-name="a.length"]').count(),
      0,
      'unchanged metrics are not listed',
    );
    assert.deepEqual(errors, []);
  } finally {
    await browser?.close();
    await ui?.close();
  }
});
