// distill ui: the page. Plain ES module, no build step; talks to the JSON endpoints of
// tools/core/src/ui/server.ts and draws curves with vega + vega-lite (globals from /assets/).
/* global vega, vegaLite */

const $ = (sel) => document.querySelector(sel);
const state = {
  file: null,
  name: null,
  runs: [],
  metricNames: [],
  picked: new Set(),
  selectedStage: null,
  lastRun: null,
  lastRunStatus: null,
};

async function api(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${path}: ${(await res.text()).trim()}`);
  return (res.headers.get('content-type') || '').includes('json') ? res.json() : res.text();
}

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
};

const fmt = (v) =>
  v === null || v === undefined
    ? '-'
    : typeof v === 'number'
      ? Number.isInteger(v)
        ? String(v)
        : v.toFixed(4)
      : String(v);
const duration = (ms) =>
  ms === null || ms === undefined
    ? '-'
    : ms < 1000
      ? `${ms}ms`
      : ms < 60000
        ? `${(ms / 1000).toFixed(1)}s`
        : `${Math.floor(ms / 60000)}m${String(Math.round((ms % 60000) / 1000)).padStart(2, '0')}s`;

// ---- views -------------------------------------------------------------------------------
/** A failed request (e.g. a diff with one run only) is shown in the header, not thrown away. */
function showError(e) {
  $('#run-status').textContent = e.message;
  $('#run-status').className = 'status-failed';
}

function show(view) {
  for (const b of document.querySelectorAll('nav button')) b.classList.toggle('active', b.dataset.view === view);
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== `view-${view}`;
  const load = view === 'curves' ? drawCurves : view === 'reports' ? loadReports : view === 'diff' ? loadDiff : null;
  load?.().catch(showError);
}

// ---- pipeline DAG with live status ------------------------------------------------------
async function loadPipeline() {
  const p = await api('/api/pipeline', { file: state.file });
  state.name = p.name;
  state.stageIds = p.stages;
  $('#dag').innerHTML = p.svg.replace(/^[\s\S]*?(<svg)/, '$1');
  p.stages.forEach((id, i) => {
    const g = document.getElementById(`stage-${i}`);
    if (!g) return;
    g.dataset.stage = id;
    g.addEventListener('click', () => selectStage(id).catch(showError));
  });
  state.lastRun = undefined;
  await refreshStatus();
  await loadRuns();
}

let statusView = null;
async function refreshStatus() {
  if (!state.file) return;
  const s = await api('/api/status', { file: state.file });
  statusView = s;
  for (const stage of s.stages) {
    const g = document.querySelector(`#dag g.node[data-stage="${CSS.escape(stage.id)}"]`);
    if (!g) continue;
    g.dataset.status = stage.status;
    const p = stage.progress;
    if (p) g.dataset.progress = `${p.done}/${p.total ?? '?'}`;
    else delete g.dataset.progress;
    // The node's third line (laid out wide enough by the server) holds the status.
    const label = [...g.querySelectorAll('text')].at(-1);
    if (label)
      label.textContent = `${stage.status}${p ? ` ${p.done}/${p.total ?? '?'}${p.unit ? ` ${p.unit}` : ''}` : ''}`;
  }
  $('#run-status').textContent = s.runId ? `last run ${s.runId}: ${s.runStatus}` : 'no runs yet';
  $('#run-status').className = `status-${s.runStatus}`;
  if (s.runId !== state.lastRun || s.runStatus !== state.lastRunStatus) {
    const first = state.lastRun === undefined;
    state.lastRun = s.runId;
    state.lastRunStatus = s.runStatus;
    if (!first) await loadRuns();
  }
  if (state.selectedStage) renderStage(state.selectedStage, false);
}

async function selectStage(id) {
  state.selectedStage = id;
  for (const g of document.querySelectorAll('#dag g.node')) g.classList.toggle('selected', g.dataset.stage === id);
  await renderStage(id, true);
}

async function renderStage(id, withLog) {
  const stage = statusView?.stages.find((s) => s.id === id);
  if (!stage) return;
  $('#stage-detail').hidden = false;
  $('#stage-title').textContent = id;
  const facts = $('#stage-facts');
  facts.replaceChildren();
  const add = (k, v) => v !== undefined && facts.append(el('dt', {}, k), el('dd', { 'data-fact': k }, v));
  add('plugin', stage.plugin);
  add('status', stage.status);
  add(
    'duration',
    stage.durationMs !== undefined && stage.status !== 'running' ? duration(stage.durationMs) : undefined,
  );
  add(
    'progress',
    stage.progress ? `${stage.progress.done}/${stage.progress.total ?? '?'} ${stage.progress.unit ?? ''}` : undefined,
  );
  add('key', stage.key);
  add('reason', stage.reason);
  add('error', stage.error);
  add('upstream', stage.upstream.join(', ') || '-');
  $('#stage-params').textContent = JSON.stringify(stage.params, null, 2);
  if (withLog || stage.status === 'running') {
    $('#stage-log').textContent = stage.hasLog
      ? await api('/api/log', { run: statusView.runId, stage: id }).catch((e) => e.message)
      : '(no log in the latest run: the stage did not execute)';
  }
}

// ---- runs table ------------------------------------------------------------------------
async function loadRuns() {
  const r = await api('/api/runs', { pipeline: state.name });
  state.runs = r.runs;
  state.metricNames = r.metricNames;
  renderRuns();
  fillRunSelects();
}

function renderRuns() {
  const status = $('#filter-status').value;
  const text = $('#filter-text').value.trim().toLowerCase();
  const rows = state.runs.filter(
    (r) =>
      (!status || r.status === status) &&
      (!text || r.runId.toLowerCase().includes(text) || r.changedParams.join(' ').toLowerCase().includes(text)),
  );
  const head = el(
    'tr',
    {},
    el('th', {}, ''),
    ...[
      'run',
      'date (UTC)',
      'status',
      'duration',
      'ran',
      'cached',
      'failed',
      ...state.metricNames,
      'changed params',
    ].map((h) => el('th', {}, h)),
  );
  const body = rows.map((r) => {
    const pick = el('input', { type: 'checkbox', class: 'pick' });
    pick.checked = state.picked.has(r.runId);
    pick.addEventListener('change', () => {
      if (pick.checked) state.picked.add(r.runId);
      else state.picked.delete(r.runId);
      fillRunSelects();
    });
    return el(
      'tr',
      { 'data-run': r.runId },
      el('td', {}, pick),
      el('td', {}, r.runId),
      el('td', {}, r.startedAt.replace('T', ' ').slice(0, 19)),
      el('td', { class: `status-${r.status}` }, r.status),
      el('td', { class: 'num' }, duration(r.durationMs)),
      el('td', { class: 'num' }, r.ran),
      el('td', { class: 'num' }, r.cached),
      el('td', { class: 'num' }, r.failed),
      ...state.metricNames.map((m) => el('td', { class: 'num' }, fmt(r.metrics[m]))),
      el('td', {}, r.changedParams.join(' ')),
    );
  });
  $('#runs').replaceChildren(head, ...body);
}

/** The runs the curves and the diff use: the ticked ones, else the latest two. */
function chosenRuns() {
  const picked = state.runs.filter((r) => state.picked.has(r.runId)).map((r) => r.runId);
  return picked.length > 0 ? picked : state.runs.slice(0, 2).map((r) => r.runId);
}

function fillRunSelects() {
  const [b, a] = chosenRuns().length >= 2 ? chosenRuns().slice(0, 2) : [state.runs[0]?.runId, state.runs[1]?.runId];
  for (const [sel, value] of [
    [$('#diff-a'), a],
    [$('#diff-b'), b],
  ]) {
    sel.replaceChildren(...state.runs.map((r) => el('option', { value: r.runId }, r.runId)));
    if (value) sel.value = value;
  }
}

// ---- curves ----------------------------------------------------------------------------
async function drawCurves() {
  const runs = chosenRuns();
  $('#curve-runs').textContent = runs.length ? `runs: ${runs.join(', ')}` : 'no runs';
  if (runs.length === 0) return;
  const names = await api('/api/series-names', { runs: runs.join(',') });
  const stageSel = $('#curve-stage');
  const metricSel = $('#curve-metric');
  const stages = Object.keys(names);
  const keepStage = stages.includes(stageSel.value) ? stageSel.value : stages[0];
  stageSel.replaceChildren(...stages.map((s) => el('option', { value: s }, s)));
  if (keepStage) stageSel.value = keepStage;
  const metrics = names[stageSel.value] ?? [];
  const keepMetric = metrics.includes(metricSel.value)
    ? metricSel.value
    : metrics.includes('loss')
      ? 'loss'
      : metrics[0];
  metricSel.replaceChildren(...metrics.map((m) => el('option', { value: m }, m)));
  if (keepMetric) metricSel.value = keepMetric;
  if (!stageSel.value || !metricSel.value) {
    $('#curve').textContent = 'these runs recorded no per-step metrics';
    return;
  }
  const series = await api('/api/series', { runs: runs.join(','), stage: stageSel.value, metric: metricSel.value });
  const values = series.flatMap((s) => s.points.map(([step, value]) => ({ run: s.run, step, value })));
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: `${stageSel.value}: ${metricSel.value}`,
    width: 640,
    height: 320,
    data: { values },
    mark: { type: 'line', point: false },
    encoding: {
      x: { field: 'step', type: 'quantitative' },
      y: { field: 'value', type: 'quantitative', title: metricSel.value },
      color: { field: 'run', type: 'nominal' },
    },
  };
  $('#curve').replaceChildren();
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), {
    renderer: 'svg',
    container: '#curve',
    hover: true,
  });
  await view.runAsync();
  $('#curve').dataset.points = String(values.length);
}

// ---- reports ----------------------------------------------------------------------------
async function loadReports() {
  const reports = await api('/api/reports', { pipeline: state.name });
  const box = $('#reports');
  if (reports.length === 0) {
    box.textContent = 'no eval reports in the latest run of this pipeline';
    return;
  }
  box.replaceChildren(
    ...reports.map((r) => {
      const md = el('pre', { class: 'markdown' });
      if (r.markdown)
        void api(r.markdown)
          .then((t) => (md.textContent = t))
          .catch(showError);
      return el(
        'div',
        { class: 'report', 'data-stage': r.stage },
        el('h2', {}, r.stage),
        ...r.plots.map((p) => el('img', { src: p, alt: p.split('/').pop() })),
        md,
      );
    }),
  );
}

// ---- diff ---------------------------------------------------------------------------------
async function loadDiff() {
  const a = $('#diff-a').value;
  const b = $('#diff-b').value;
  if (!a || !b) {
    $('#diff-metrics').replaceChildren(el('tr', {}, el('td', {}, 'two runs are needed')));
    return;
  }
  const d = await api('/api/diff', { pipeline: state.name, a, b });
  const table = (rows, numeric) => [
    el('tr', {}, ...['name', 'A', 'B', ...(numeric ? ['change'] : [])].map((h) => el('th', {}, h))),
    ...rows.map((r) =>
      el(
        'tr',
        { 'data-name': r.name },
        el('td', {}, r.name),
        el('td', { class: 'a num' }, fmt(r.a)),
        el('td', { class: 'b num' }, fmt(r.b)),
        ...(numeric
          ? [
              el(
                'td',
                { class: 'change num' },
                typeof r.a === 'number' && typeof r.b === 'number'
                  ? `${r.b - r.a >= 0 ? '+' : ''}${fmt(r.b - r.a)}`
                  : '-',
              ),
            ]
          : []),
      ),
    ),
  ];
  $('#diff-metrics').replaceChildren(...table(d.metrics, true));
  $('#diff-params').replaceChildren(...table(d.params, false));
}

// ---- start -------------------------------------------------------------------------------
async function start() {
  for (const b of document.querySelectorAll('nav button')) b.addEventListener('click', () => show(b.dataset.view));
  $('#filter-status').addEventListener('change', renderRuns);
  $('#filter-text').addEventListener('input', renderRuns);
  $('#curve-stage').addEventListener('change', () => drawCurves().catch(showError));
  $('#curve-metric').addEventListener('change', () => drawCurves().catch(showError));
  $('#diff-a').addEventListener('change', () => loadDiff().catch(showError));
  $('#diff-b').addEventListener('change', () => loadDiff().catch(showError));
  const pipelines = await api('/api/pipelines');
  const sel = $('#pipeline');
  sel.replaceChildren(...pipelines.map((p) => el('option', { value: p.file }, p.name)));
  const wanted = new URLSearchParams(location.search).get('pipeline');
  const initial = pipelines.find((p) => p.name === wanted || p.file === wanted) ?? pipelines[0];
  sel.addEventListener('change', () => {
    state.file = sel.value;
    state.picked.clear();
    loadPipeline().catch(showError);
  });
  if (!initial) {
    $('#dag').textContent = 'no pipelines found (pipelines/*.yaml or run records)';
    return;
  }
  sel.value = initial.file;
  state.file = initial.file;
  await loadPipeline();
  document.body.dataset.ready = 'true';
  setInterval(() => void refreshStatus().catch(() => {}), 1000);
}

start().catch((e) => {
  document.body.prepend(el('pre', { class: 'error' }, e.message));
});
