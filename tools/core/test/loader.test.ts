/**
 * Pipeline loader: every validation error with its exact file:line:column and message (positions
 * counted by hand from the fixture text), several errors at once, and the expanded pipeline
 * (fan-out ids, matrix, references, substitution, params file, --set, topological order).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Diagnostic } from '../src/pipeline/diagnostics.js';
import { formatDiagnostic } from '../src/pipeline/diagnostics.js';
import { CONCAT, MARKER, load, loadErrors, makeProject, writeText } from './helpers.js';

const project = makeProject('distill-loader-');
let counter = 0;
/** Writes a fixture pipeline and returns its path. */
function fixture(text: string): string {
  return writeText(project, `p${counter++}.yaml`, text);
}

/**
 * "line:column message" of each diagnostic, for compact exact assertions. The list of available
 * plugins is checked separately (built-in plugins may be added), and shown here as "...".
 */
function located(diagnostics: Diagnostic[]): string[] {
  return diagnostics.map((d) => `${d.line}:${d.column} ${d.message.replace(/; available: .*$/, '; available: ...')}`);
}

test('YAML syntax error: located at the offending token, and nothing else is checked', async () => {
  // Line 4 is "    with: text: hi": "text" starts at column 4 + "with: ".length + 1 = 11.
  const file = fixture(`stages:\n  a:\n    plugin: ${CONCAT}\n    with: text: hi\n`);
  const [d, ...rest] = await loadErrors(file);
  assert.equal(rest.length, 0);
  assert.equal(d?.file, file);
  assert.equal(`${d?.line}:${d?.column}`, '4:11');
  assert.match(d?.message ?? '', /^YAML syntax: Nested mappings are not allowed in compact mappings/);
  // The excerpt repeats the source line with a caret under column 11.
  assert.equal(d?.excerpt, `  4 |     with: text: hi\n    | ${' '.repeat(10)}^`);
  assert.ok(formatDiagnostic(d as Diagnostic).startsWith(`${file}:4:11: error: YAML syntax:`));
});

test('YAML syntax errors: tab indentation and duplicate keys', async () => {
  const tab = await loadErrors(fixture(`stages:\n  a:\n    plugin: ${CONCAT}\n\twith: {}\n`));
  assert.deepEqual(located(tab), ['4:1 YAML syntax: Tabs are not allowed as indentation']);
  const dup = await loadErrors(fixture(`stages:\n  a:\n    plugin: ${CONCAT}\n  a:\n    plugin: ${CONCAT}\n`));
  assert.deepEqual(located(dup), ['4:3 YAML syntax: Map keys must be unique']);
});

test('unknown key at the top level suggests the closest valid key', async () => {
  const d = await loadErrors(fixture(`name: t\nstagez:\n  a:\n    plugin: ${CONCAT}\n`));
  // The typo explains the missing "stages": one mistake, one error.
  assert.deepEqual(located(d), ['2:1 unknown key "stagez" in the pipeline (did you mean "stages"?)']);
});

test('unknown key far from any valid key lists the valid keys', async () => {
  const d = await loadErrors(fixture(`stages:\n  a:\n    plugin: ${CONCAT}\n    zzzzzzzz: 1\n`));
  assert.equal(d.length, 1);
  assert.equal(`${d[0]?.line}:${d[0]?.column}`, '4:5');
  assert.match(
    d[0]?.message ?? '',
    /^unknown key "zzzzzzzz" in stage "a"; valid keys: plugin, description, foreach, matrix, inputs, needs, resources, timeout, retries, with$/,
  );
});

test('unknown key in a stage and in resources, with suggestions, located at the key', async () => {
  const d = await loadErrors(
    fixture(`stages:\n  a:\n    plugn: ${CONCAT}\n  b:\n    plugin: ${CONCAT}\n    resources:\n      gpu: 1\n`),
  );
  assert.deepEqual(located(d), [
    '3:5 unknown key "plugn" in stage "a" (did you mean "plugin"?)',
    '7:7 unknown key "gpu" in stage "b" at resources (did you mean "gpus"?)',
  ]);
});

test('wrong types are located at the value', async () => {
  const d = await loadErrors(
    fixture(
      [
        'stages:',
        '  a:',
        `    plugin: ${CONCAT}`,
        '    resources: { cpus: two }',
        '  b:',
        `    plugin: ${CONCAT}`,
        '    needs: a',
        '  c:',
        `    plugin: ${CONCAT}`,
        '    foreach: { x: 1 }',
        '',
      ].join('\n'),
    ),
  );
  // "    resources: { cpus: " is 23 characters: "two" is at column 24. "    needs: " is 11: "a" at 12.
  assert.deepEqual(located(d), [
    '4:24 "resources.cpus" in stage "a" must be integer, got string "two"',
    '7:12 "needs" in stage "b" must be array, got string "a"',
    '10:14 "foreach" in stage "c" must be array, got a mapping',
  ]);
});

test('unknown plugin suggests the closest plugin name', async () => {
  const d = await loadErrors(fixture('stages:\n  a:\n    plugin: test-concta\n'));
  assert.deepEqual(located(d), [
    '3:13 unknown plugin "test-concta" in stage "a" (did you mean "test-concat"?); available: ...',
  ]);
  const available = (/; available: (.*)$/.exec(d[0]?.message ?? '')?.[1] ?? '').split(', ');
  assert.ok(available.includes('test-concat') && available.includes('test-marker'), available.join());
  assert.deepEqual(available, [...available].sort(), 'listed in order');
  // A missing module path is an unknown plugin too.
  const missing = await loadErrors(fixture('stages:\n  a:\n    plugin: ./nope.js\n'));
  assert.equal(located(missing)[0]?.startsWith('3:13 unknown plugin "./nope.js"'), true);
});

test('a dependency cycle is named, and located at the first stage it names', async () => {
  const text = [
    'stages:',
    '  a:',
    `    plugin: ${CONCAT}`,
    '    needs: [c]',
    '  b:',
    `    plugin: ${CONCAT}`,
    '    needs: [a]',
    '  c:',
    `    plugin: ${CONCAT}`,
    '    needs: [b]',
    '  d:',
    `    plugin: ${CONCAT}`,
    '',
  ].join('\n');
  const d = await loadErrors(fixture(text));
  assert.equal(d.length, 1);
  const match = /^dependency cycle: (\w) -> (\w) -> (\w) -> (\w)$/.exec(d[0]?.message ?? '');
  assert.ok(match, d[0]?.message);
  const [, s1, s2, s3, s4] = match;
  assert.equal(s4, s1, 'the cycle closes on its first stage');
  // Each arrow goes from a stage to one that depends on it: a -> b -> c -> a (rotated).
  const next: Record<string, string> = { a: 'b', b: 'c', c: 'a' };
  assert.equal(next[s1 as string], s2);
  assert.equal(next[s2 as string], s3);
  const keyLine: Record<string, number> = { a: 2, b: 5, c: 8 };
  assert.equal(`${d[0]?.line}:${d[0]?.column}`, `${keyLine[s1 as string]}:3`);
});

test('a stage that depends on itself', async () => {
  const d = await loadErrors(fixture(`stages:\n  a:\n    plugin: ${CONCAT}\n    needs: [a]\n`));
  assert.deepEqual(located(d), ['2:3 stage "a" depends on itself']);
});

test('dangling references in inputs and needs, and a missing fan-out instance', async () => {
  const text = [
    'stages:',
    '  fan:',
    `    plugin: ${CONCAT}`,
    '    foreach: [bird, cat]',
    '  a:',
    `    plugin: ${CONCAT}`,
    '    inputs: { x: fann }',
    '    needs: [fan, nope]',
    '  b:',
    `    plugin: ${CONCAT}`,
    '    inputs:',
    '      x: [fan@bird, fan@dog]',
    '',
  ].join('\n');
  const d = await loadErrors(fixture(text));
  assert.deepEqual(located(d), [
    // "    inputs: { x: " is 17 characters.
    '7:18 stage "a" refers to unknown stage "fann" (did you mean "fan"?)',
    // "    needs: [fan, " is 17 characters.
    '8:18 stage "a" refers to unknown stage "nope"',
    // "      x: [fan@bird, " is 20 characters.
    '12:21 stage "b" refers to "fan@dog", which is not an instance of "fan" (instances: fan@bird, fan@cat)',
  ]);
});

test('bad ${{ }} expressions are located at the string holding them', async () => {
  const text = [
    'stages:',
    '  a:',
    `    plugin: ${CONCAT}`,
    '    with:',
    '      text: "x-${{ iteem }}"',
    '  b:',
    `    plugin: ${CONCAT}`,
    '    with:',
    '      text: ${{ item }}',
    '  c:',
    `    plugin: ${CONCAT}`,
    '    foreach: [1]',
    '    with:',
    '      text: ${{ params.nope }}',
    '',
  ].join('\n');
  const d = await loadErrors(fixture(text));
  assert.deepEqual(located(d), [
    '5:13 unknown expression ${{ iteem }}: expressions start with item or params (did you mean "item"?)',
    '9:13 ${{ item }} used in a stage without foreach or matrix',
    '14:13 ${{ params.nope }}: no "nope" in params',
  ]);
});

test('plugin parameter errors are located under with:, by the same mechanism', async () => {
  const text = [
    'stages:',
    '  a:',
    `    plugin: ${CONCAT}`,
    '    with:',
    '      txt: hi',
    '      repeat: two',
    '  b:',
    `    plugin: ${MARKER}`,
    '    with:',
    '      journal: j.txt',
    '      options: { level: -1, lvl: 2 }',
    '  c:',
    `    plugin: ${MARKER}`,
    '    with: { sleepMs: 0 }',
    '',
  ].join('\n');
  const d = await loadErrors(fixture(text));
  assert.deepEqual(located(d), [
    '5:7 unknown key "txt" in parameters of stage "a" (plugin test-concat) (did you mean "text"?)',
    '6:15 "repeat" in parameters of stage "a" (plugin test-concat) must be integer, got string "two"',
    // "      options: { level: -1, " is 28 characters: "lvl" is at 29; "-1" at 25.
    '11:29 unknown key "lvl" in parameters of stage "b" (plugin test-marker) at options (did you mean "level"?)',
    '11:25 "options.level" in parameters of stage "b" (plugin test-marker) must be >= 0 (got number -1)',
    // A missing required parameter points at the with: mapping ("    with: " is 10 characters).
    '14:11 missing required key "journal" in parameters of stage "c" (plugin test-marker)',
  ]);
});

test('a wrong parameter in one fan-out instance names that instance', async () => {
  const text = [
    'stages:',
    '  f:',
    `    plugin: ${CONCAT}`,
    '    foreach: [1, x]',
    '    with: { repeat: "${{ item }}" }',
    '',
  ].join('\n');
  const d = await loadErrors(fixture(text));
  assert.deepEqual(located(d), [
    '5:21 "repeat" in parameters of stage "f@x" (plugin test-concat) must be integer, got string "x"',
  ]);
});

test('--set errors: malformed, unknown stage, wrong type', async () => {
  const file = fixture(`stages:\n  alpha:\n    plugin: ${CONCAT}\n`);
  const d = await loadErrors(file, ['oops', 'alpah.text=x', 'alpha.repeat=abc', 'alpha.colour=red']);
  // The two parameter errors come from the same validation: their relative order is not part of the contract.
  assert.deepEqual(
    d.map((x) => [x.line, x.message]).sort(),
    [
      [0, '--set oops: expected <stage>.<param>=<value> or params.<name>=<value>'],
      [0, '--set alpah.text=x: unknown stage "alpah" (did you mean "alpha"?)'],
      [
        0,
        '"repeat" in parameters of stage "alpha" (plugin test-concat) must be integer, got string "abc" (set by --set alpha.repeat=abc)',
      ],
      [
        0,
        'unknown key "colour" in parameters of stage "alpha" (plugin test-concat); valid keys: text, repeat, sleepMs, fail, crash, file, journal, bytes (set by --set alpha.colour=red)',
      ],
    ].sort(),
  );
});

test('a path parameter naming a missing file', async () => {
  const text = `stages:\n  a:\n    plugin: ${CONCAT}\n    with:\n      file: data/missing.txt\n`;
  const file = fixture(text);
  const d = await loadErrors(file);
  assert.deepEqual(located(d), [
    `5:13 path "data/missing.txt" (parameter file) does not exist: ${join(project, 'data', 'missing.txt')}`,
  ]);
});

test('several errors in several stages are reported together, in file order', async () => {
  const text = [
    'stages:', //                          1
    '  a:', //                             2
    `    plugin: ${CONCAT}`, //            3
    '    with: { repeat: 0 }', //          4  minimum violated
    '  b:', //                             5
    '    plugin: test-concot', //          6  unknown plugin
    '  c:', //                             7
    `    plugin: ${CONCAT}`, //            8
    '    resources: { memroy: 1GiB }', //  9  unknown key
    '  d:', //                             10
    `    plugin: ${CONCAT}`, //            11
    '    with: { text: 5 }', //            12 wrong type
    '',
  ].join('\n');
  const d = await loadErrors(fixture(text));
  assert.deepEqual(located(d), [
    '9:18 unknown key "memroy" in stage "c" at resources (did you mean "memory"?)',
    '4:21 "repeat" in parameters of stage "a" (plugin test-concat) must be >= 1 (got number 0)',
    '6:13 unknown plugin "test-concot" in stage "b" (did you mean "test-concat"?); available: ...',
    '12:19 "text" in parameters of stage "d" (plugin test-concat) must be string, got number 5',
  ]);
});

test('fan-out: foreach and matrix instance ids, item substitution, group references', async () => {
  const text = [
    'stages:',
    '  infer:',
    `    plugin: ${CONCAT}`,
    '    foreach: [bird, cat]',
    '    with: { text: "t-${{ item }}" }',
    '  student:',
    `    plugin: ${CONCAT}`,
    '    matrix: { k: [1, 2], t: [x, y] }',
    '    inputs: { teacher: infer }',
    '    with: { text: "${{ item.t }}", repeat: "${{ item.k }}" }',
    '  pick:',
    `    plugin: ${CONCAT}`,
    '    inputs: { s: ["student@k=2,t=x", infer@cat] }',
    '',
  ].join('\n');
  const p = await load(fixture(text));
  assert.deepEqual(
    p.stages.map((s) => s.id),
    ['infer@bird', 'infer@cat', 'student@k=1,t=x', 'student@k=1,t=y', 'student@k=2,t=x', 'student@k=2,t=y', 'pick'],
  );
  assert.deepEqual(p.groups.get('student'), [
    'student@k=1,t=x',
    'student@k=1,t=y',
    'student@k=2,t=x',
    'student@k=2,t=y',
  ]);
  assert.equal(p.byId.get('infer@cat')?.params.text, 't-cat');
  // A scalar that is exactly one expression keeps the value's type (repeat is an integer).
  assert.deepEqual(p.byId.get('student@k=2,t=y')?.params, {
    text: 'y',
    repeat: 2,
    sleepMs: 0,
    fail: false,
    crash: false,
    bytes: 0,
  });
  assert.deepEqual(p.byId.get('student@k=1,t=x')?.inputs, { teacher: ['infer@bird', 'infer@cat'] });
  assert.deepEqual(p.byId.get('pick')?.inputs, { s: ['student@k=2,t=x', 'infer@cat'] });
  assert.deepEqual(p.byId.get('pick')?.upstream, ['infer@cat', 'student@k=2,t=x']);
});

test('topological order: dependencies first, ties in file order', async () => {
  const text = [
    'stages:',
    ...['report:c,b', 'c:a', 'b:a', 'a:', 'z:'].flatMap((spec) => {
      const [name, deps] = spec.split(':');
      return [`  ${name}:`, `    plugin: ${CONCAT}`, ...(deps ? [`    needs: [${deps}]`] : [])];
    }),
    '',
  ].join('\n');
  const p = await load(fixture(text));
  const order = p.stages.map((s) => s.id);
  assert.deepEqual(order, ['a', 'z', 'c', 'b', 'report']);
  for (const s of p.stages)
    for (const up of s.upstream) assert.ok(order.indexOf(up) < order.indexOf(s.id), `${up} before ${s.id}`);
});

test('params file, ${{ params.x }}, --set of params and of stage params, resources', async () => {
  writeText(project, 'params.yaml', 'train:\n  repeat: 3\n  word: hey\n');
  const text = [
    'params: params.yaml',
    'stages:',
    '  a:',
    `    plugin: ${CONCAT}`,
    '    resources: { cpus: 2, gpus: 1, memory: 512MiB }',
    '    with: { text: "${{ params.train.word }}", repeat: "${{ params.train.repeat }}" }',
    '  b:',
    `    plugin: ${CONCAT}`,
    '    with: { text: b }',
    '',
  ].join('\n');
  const file = fixture(text);
  const p = await load(file);
  assert.equal(p.byId.get('a')?.params.text, 'hey');
  assert.equal(p.byId.get('a')?.params.repeat, 3);
  assert.deepEqual(p.byId.get('a')?.resources, { cpus: 2, gpus: 1, memoryMiB: 512 });
  // Plugin default resources (cpus: 1) when the stage declares none.
  assert.deepEqual(p.byId.get('b')?.resources, { cpus: 1, gpus: 0, memoryMiB: 0 });
  const q = await load(file, ['params.train.repeat=5', 'b.text=changed', 'b.sleepMs=10']);
  assert.equal(q.byId.get('a')?.params.repeat, 5);
  assert.equal(q.byId.get('b')?.params.text, 'changed');
  assert.equal(q.byId.get('b')?.params.sleepMs, 10);
});

test('a path parameter resolves against the pipeline directory', async () => {
  writeText(project, 'sub/input.txt', 'hello');
  writeFileSync(
    join(project, 'sub', 'p.yaml'),
    `stages:\n  a:\n    plugin: ${CONCAT}\n    with: { file: input.txt }\n`,
  );
  const p = await load(join(project, 'sub', 'p.yaml'));
  assert.deepEqual(p.byId.get('a')?.pathParams, [{ pointer: 'file', absolute: join(project, 'sub', 'input.txt') }]);
  // The cache key sees the path as written (relative), not the absolute path.
  assert.equal(p.byId.get('a')?.params.file, 'input.txt');
});

test('per-instance references: inputs and needs may use ${{ item }}', async () => {
  const text = [
    'stages:',
    '  infer:',
    `    plugin: ${CONCAT}`,
    '    foreach: [bird, cat]',
    '  student:',
    `    plugin: ${CONCAT}`,
    '    foreach: [bird, cat]',
    '    inputs: { teacher: "infer@${{ item }}" }',
    '  report:',
    `    plugin: ${CONCAT}`,
    '    needs: [student]',
    '',
  ].join('\n');
  const p = await load(fixture(text));
  assert.deepEqual(p.byId.get('student@cat')?.inputs, { teacher: ['infer@cat'] });
  assert.deepEqual(p.byId.get('student@bird')?.upstream, ['infer@bird']);
  assert.deepEqual(p.byId.get('report')?.upstream, ['student@bird', 'student@cat']);
  assert.deepEqual(p.byId.get('report')?.inputs, {});
});

test('every problem in one report: a resources type error, a parameter error and a dangling need of three stages', async () => {
  const d = await loadErrors(
    fixture(
      [
        'stages:',
        '  a:',
        `    plugin: ${CONCAT}`,
        '    resources: { cpus: many }',
        '    with: { text: A, repeat: 2 }',
        '  b:',
        `    plugin: ${CONCAT}`,
        '    with: { repeat: zero }',
        '  c:',
        `    plugin: ${CONCAT}`,
        '    needs: [a, b, nowhere]',
        '    timeout: soon',
        '',
      ].join('\n'),
    ),
  );
  const messages = d.map((x) => `${x.line} ${x.message}`);
  assert.equal(messages.length, 4, messages.join('\n'));
  assert.match(messages[0] ?? '', /^4 "resources\.cpus" in stage "a" must be integer, got string "many"$/);
  assert.match(messages.find((m) => m.startsWith('12 ')) ?? '', /"timeout" in stage "c" has the wrong type or form/);
  assert.match(
    messages.find((m) => m.startsWith('8 ')) ?? '',
    /"repeat" in parameters of stage "b" \(plugin test-concat\) must be integer, got string "zero"/,
  );
  assert.match(messages.find((m) => m.startsWith('11 ')) ?? '', /stage "c" refers to unknown stage "nowhere"/);
});

test('timeout and retries: durations in seconds or with units; kept on each instance', async () => {
  const file = fixture(
    `stages:\n  a:\n    plugin: ${CONCAT}\n    foreach: [x, y]\n    timeout: 1h30m\n    retries: 2\n  b:\n    plugin: ${CONCAT}\n    timeout: 2.5\n`,
  );
  const pipeline = await load(file);
  assert.deepEqual(
    pipeline.stages.map((s) => [s.id, s.timeoutMs, s.retries]),
    [
      ['a@x', 5_400_000, 2],
      ['a@y', 5_400_000, 2],
      ['b', 2500, 0],
    ],
  );
});

test('--set params.x on a pipeline without a params file, or naming no param, is an error', async () => {
  const bare = fixture(`stages:\n  a:\n    plugin: ${CONCAT}\n`);
  const none = await loadErrors(bare, ['params.lr=1']);
  assert.equal(
    none[0]?.message,
    '--set params.lr=1: the pipeline has no params file (add `params: params.yaml` to it)',
  );
  writeText(project, 'params.yaml', 'train: { lr: 0.1 }\n');
  const withParams = fixture(
    `params: params.yaml\nstages:\n  a:\n    plugin: ${CONCAT}\n    with: { text: 'lr=\${{ params.train.lr }}' }\n`,
  );
  const typo = await loadErrors(withParams, ['params.train.lt=1']);
  assert.equal(typo[0]?.message, '--set params.train.lt=1: no "lt" in params.train (did you mean "lr"?); it has: lr');
  const ok = await load(withParams, ['params.train.lr=0.5']);
  assert.equal(ok.stages[0]?.params.text, 'lr=0.5');
});

test('a binary file given as a pipeline: one clear error, no raw control bytes', async () => {
  const file = join(project, 'binary.yaml');
  writeFileSync(file, Buffer.from([0x1b, 0x5b, 0x32, 0x4a, 0x00, 0x01, 0x02, 0xff, 0x0a, 0x1b, 0x5d]));
  const d = await loadErrors(file);
  assert.equal(d.length, 1);
  assert.match(d[0]?.message ?? '', /not a text file/);
  // Control bytes that reach a message through a YAML error are escaped when formatted.
  const text = formatDiagnostic({
    file: 'x.yaml',
    line: 1,
    column: 1,
    message: 'bad \u001b[2J',
    excerpt: '  1 | \u001b]0;title\u0007',
  });
  assert.equal(text, 'x.yaml:1:1: error: bad \\x1b[2J\n  1 | \\x1b]0;title\\x07');
});
