/** `distill dag --format svg`: Graphviz (WebAssembly, from npm) lays out the DAG; no system dot. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderDagSvg } from '../src/cli/dag.js';
import { concatStage, load, makeProject, pipelineYaml, runCli, writeText } from './helpers.js';

test('the SVG has one node per stage instance and one edge per dependency', async () => {
  const root = makeProject('distill-dag-');
  const file = writeText(
    root,
    'g.yaml',
    pipelineYaml([
      concatStage('a', { text: 'A' }),
      concatStage('b', { text: 'B' }, { inputs: { x: 'a' } }),
      concatStage('c', { text: 'C' }, { inputs: { x: ['a', 'b'] } }),
    ]),
  );
  const svg = await renderDagSvg(await load(file));
  assert.match(svg, /^<\?xml[\s\S]*<svg [\s\S]*<\/svg>\s*$/);
  const nodes = [...svg.matchAll(/<g id="node\d+" class="node">[\s\S]*?<\/g>/g)].map(
    (m) => /<text[^>]*>([^<]*)<\/text>/.exec(m[0])?.[1],
  );
  assert.deepEqual(nodes.sort(), ['a', 'b', 'c']);
  assert.equal([...svg.matchAll(/class="edge"/g)].length, 3);
  const cli = await runCli(['dag', file, '--format', 'svg'], { cwd: root });
  assert.equal(cli.code, 0, cli.stderr);
  assert.equal(cli.stdout, svg);
});
