import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openShardSet, parseDatasetSchema } from '@distillery/runtime/shards';
import { DEFAULT_GEOMETRY } from '../src/generator.js';
import { generateEft } from '../src/generate.js';
import { extractVertical } from '../src/vertical.js';
import { taxonomyFromMap } from '../src/import-map.js';
import { readTaxonomy, writeTaxonomy } from '../src/taxonomy.js';

test("eft-vertical: exactly the vertical's rows, local labels that map back to the global ones, class_map.json", async () => {
  const root = mkdtempSync(join(tmpdir(), 'eft-vertical-'));
  try {
    const data = join(root, 'data');
    await generateEft({
      geometry: { ...DEFAULT_GEOMETRY, classes: 200, verticals: 4, groupSize: 10 },
      perClass: { train: 3, val: 0, test: 1 },
      outDir: data,
      rowsPerShard: 256,
      chunkRows: 100,
      statsSamples: 0,
    });
    const t = readTaxonomy(data);
    const name = t.verticals[2]!.name;
    const out = join(root, 'v');
    const r = await extractVertical({
      datasetDir: data,
      taxonomyDir: data,
      vertical: name,
      outDir: out,
      splits: ['train'],
      labels: 'multi',
      rowsPerShard: 64,
    });
    assert.equal(r.manifest.totalRows, t.verticals[2]!.size * 3);
    const classMap = JSON.parse(readFileSync(join(out, 'class_map.json'), 'utf8')) as number[];
    assert.equal(classMap.length, t.verticals[2]!.size);
    // Global label and first feature of every source row, by id.
    const source = new Map<string, { y: number; x0: number; split: string }>();
    for await (const b of (await openShardSet(data)).batches()) {
      const ids = b.strings('id'),
        ys = b.numeric('label'),
        xs = b.numeric('features'),
        sp = b.strings('split');
      ids.forEach((id, i) => source.set(id, { y: ys[i]!, x0: xs[i * 256]!, split: sp[i]! }));
    }
    const set = await openShardSet(out);
    const info = parseDatasetSchema(set.schema);
    assert.deepEqual([info.labels, info.numClasses], ['multi', classMap.length]);
    assert.deepEqual(JSON.parse(set.schema.metadata['distillery.class_map']!), classMap);
    let rows = 0;
    for await (const b of set.batches()) {
      const ids = b.strings('id'),
        xs = b.numeric('features'),
        l = b.list('labels');
      ids.forEach((id, i) => {
        const src = source.get(id)!;
        assert.equal(l.offsets[i + 1]! - l.offsets[i]!, 1);
        assert.equal(classMap[l.values[l.offsets[i]!]!], src.y, `row ${id}`);
        assert.equal(t.classVertical[src.y], 2);
        assert.equal(src.split, 'train');
        assert.equal(xs[i * 256], src.x0);
        rows++;
      });
    }
    assert.equal(rows, r.manifest.totalRows);
    await assert.rejects(
      extractVertical({
        datasetDir: data,
        taxonomyDir: data,
        vertical: 'nope',
        outDir: join(root, 'bad'),
        splits: [],
        labels: 'single',
        rowsPerShard: 64,
      }),
      /no vertical named "nope" \(verticals: plant, animal, food, landmark\)/,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('class-to-vertical map: CSV and TSV to a taxonomy, errors name the line', () => {
  const t = taxonomyFromMap(
    'm.csv',
    'id,class,vertical,group\na,2,car,sedan\nb,0,bird,gull\nc,1,car,suv\nd,3,car,sedan\n',
  );
  assert.equal(t.numClasses, 4);
  assert.deepEqual(t.verticals, [
    { name: 'car', size: 3, groups: 2 },
    { name: 'bird', size: 1, groups: 1 },
  ]);
  assert.deepEqual(t.classVertical, [1, 0, 0, 0]);
  assert.equal(t.classGroup[2], t.classGroup[3]);
  assert.notEqual(t.classGroup[1], t.classGroup[2]);
  const tsv = taxonomyFromMap('m.tsv', 'class\tvertical\n0\tx\n1\ty\n');
  assert.deepEqual(
    tsv.verticals.map((v) => v.groups),
    [1, 1],
  );
  assert.throws(
    () => taxonomyFromMap('m.csv', 'class,vertical\n0,a\n0,b\n'),
    /class map m\.csv: class 0 appears twice/,
  );
  assert.throws(() => taxonomyFromMap('m.csv', 'class,vertical\n0,a\n2,b\n'), /class 1 is missing/);
  assert.throws(
    () => taxonomyFromMap('m.csv', 'class,vertical\n0,a\nx,b\n'),
    /m\.csv line 3: class "x" is not a non-negative integer/,
  );
  assert.throws(
    () => taxonomyFromMap('m.csv', 'klass,vertical\n0,a\n'),
    /must name the columns "class" and "vertical"/,
  );
  const dir = mkdtempSync(join(tmpdir(), 'eft-tax-'));
  try {
    writeTaxonomy(dir, t);
    assert.deepEqual(readdirSync(join(dir, 'verticals')).sort(), ['bird.json', 'car.json']);
    assert.deepEqual(readTaxonomy(dir), t);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'verticals.json'), 'utf8')), {
      classToVertical: [1, 0, 0, 0],
      names: ['car', 'bird'],
    });
    writeFileSync(join(dir, 'taxonomy.json'), JSON.stringify({ ...t, numClasses: 5 }));
    assert.throws(
      () => readTaxonomy(dir),
      /taxonomy .*taxonomy\.json: classVertical \(4\) and classGroup \(4\) must both have numClasses = 5 entries/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
