import { EftGenerator, overlapStatistics, DEFAULT_GEOMETRY } from '@distillery/plugin-eft-data/generator';
const classes = Number(process.argv[2]); const wn = Number(process.argv[3] ?? DEFAULT_GEOMETRY.withinNoise);
let t0 = performance.now();
const g = new EftGenerator({ ...DEFAULT_GEOMETRY, classes, withinNoise: wn });
console.log('build ms', (performance.now() - t0).toFixed(0), g.taxonomy.verticals.map(v => v.size).join(','));
t0 = performance.now(); const s = overlapStatistics(g, Number(process.argv[4] ?? 200)); console.log('stats ms', (performance.now() - t0).toFixed(0), JSON.stringify(s));
t0 = performance.now(); let n = 0; for (const c of g.rows('train', 1, 4096)) { n += c.rows; if (n >= 40960) break; } console.log('rows/s', (n / (performance.now() - t0) * 1000).toFixed(0));
