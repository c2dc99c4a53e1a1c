/**
 * Evaluation of generators and sample sets against a reference set: Frechet distance (raw
 * coordinates, or the penultimate features of a classifier ONNX = FID with a domain feature
 * extractor), improved precision/recall, and mode coverage (2-D toy). Candidates are the stage's
 * inputs other than `reference` and `extractor`: a generated-sample set (e.g. the teacher's), or
 * one or more generator artifacts that together form a multi-student generator (the class picks
 * the generator that owns it; every class must be owned exactly once).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GENERATOR_FILES, type GeneratorInfo } from './distill.js';
import { readSampleSet, type SampleSet } from './io.js';
import { FeatureSession, GeneratorSession } from './ort.js';
import { frechetBootstrap, frechetOfSets, modeCoverage, precisionRecall } from './metrics.js';
import { writeSamplePicture } from './png.js';
import { noiseAndClasses, type Hooks } from './teacher.js';
import { writeFileAtomicSync } from '@distillery/core/plugin';

export interface GenEvalConfig {
  /** Generated samples per generator candidate (and cap for sample-set candidates and reference). */
  samples: number;
  referenceSplit?: string;
  /** Samples used for precision/recall (its cost is quadratic). */
  prSamples: number;
  k: number;
  modeCoverage: boolean;
  /** Bootstrap resamples of the Frechet distance's 95% interval (0: none). */
  bootstrap: number;
  seed: number;
  threads: number;
}

/** One row of the report. */
export interface GenEvalRow {
  name: string;
  kind: 'samples' | 'generator';
  /** Network evaluations per sample. */
  nfe: number;
  students: number;
  /** Parameters of one student (generators). */
  parameters?: number;
  divergence?: string;
  frechet: number;
  /** 95% percentile-bootstrap interval of `frechet` (when the stage's bootstrap > 0). */
  frechetLow?: number;
  frechetHigh?: number;
  precision: number;
  recall: number;
  coverage?: number;
  offMode?: number;
  /** Generation time per sample (generators, onnxruntime, batch of 256). */
  msPerSample?: number;
}

export interface GenEvalReport {
  reference: { stage: string; samples: number };
  featureSpace: string;
  samples: number;
  /** Bootstrap of the Frechet intervals: resamples and seed (absent when off). */
  bootstrap?: { resamples: number; seed: number; level: number };
  rows: GenEvalRow[];
}

/** Builds the class -> generator map of a (multi-)student and checks it covers every class once. */
export function classMap(infos: { stage: string; info: GeneratorInfo }[]): Int32Array {
  const C = infos[0]!.info.numClasses;
  const owner = new Int32Array(C).fill(-1);
  infos.forEach(({ stage, info }, g) => {
    if (info.numClasses !== C) throw new Error(`generator ${stage}: ${info.numClasses} classes, others have ${C}`);
    for (const c of info.classes) {
      if (owner[c] !== -1) throw new Error(`class ${c} is owned by both ${infos[owner[c]!]!.stage} and ${stage}`);
      owner[c] = g;
    }
  });
  const missing = [...owner.keys()].filter((c) => owner[c] === -1);
  if (missing.length)
    throw new Error(
      `classes ${JSON.stringify(missing)} have no generator (students: ${infos.map((i) => i.stage).join(', ')})`,
    );
  return owner;
}

async function generateWith(
  artifacts: readonly { stage: string; path: string }[],
  n: number,
  seed: number,
  threads: number,
): Promise<{ set: SampleSet; infos: GeneratorInfo[]; msPerSample: number }> {
  const infos = artifacts.map((a) => ({
    stage: a.stage,
    info: JSON.parse(readFileSync(join(a.path, GENERATOR_FILES.info), 'utf8')) as GeneratorInfo,
  }));
  const owner = classMap(infos);
  const { dim, numClasses } = infos[0]!.info.spec;
  const { noise, labels } = noiseAndClasses(
    n,
    dim,
    Array.from({ length: numClasses }, (_, c) => c),
    seed,
  );
  const x = new Float32Array(n * dim);
  const sessions = await Promise.all(
    artifacts.map((a) => GeneratorSession.open(join(a.path, GENERATOR_FILES.onnx), dim, { threads })),
  );
  const started = Date.now();
  try {
    const batch = 256;
    for (let a = 0; a < n; a += batch) {
      const b = Math.min(n, a + batch);
      // Route each row to the generator owning its class; one call per generator per batch.
      for (let g = 0; g < sessions.length; g++) {
        const rows: number[] = [];
        for (let i = a; i < b; i++) if (owner[labels[i]!] === g) rows.push(i);
        if (rows.length === 0) continue;
        const z = new Float32Array(rows.length * dim);
        rows.forEach((r, j) => z.set(noise.subarray(r * dim, (r + 1) * dim), j * dim));
        const out = await sessions[g]!.generate(
          z,
          rows.map((r) => labels[r]!),
        );
        rows.forEach((r, j) => x.set(out.subarray(j * dim, (j + 1) * dim), r * dim));
      }
    }
  } finally {
    await Promise.all(sessions.map((s) => s.release()));
  }
  const msPerSample = (Date.now() - started) / n;
  return {
    set: { x, noise, labels, n, dim, shape: infos[0]!.info.shape, numClasses, metadata: {} },
    infos: infos.map((i) => i.info),
    msPerSample,
  };
}

/** Evaluates every candidate; writes report.json, report.md and <name>.png into outDir. */
export async function evaluateGenerators(
  inputs: Readonly<Record<string, readonly { stage: string; path: string }[]>>,
  outDir: string,
  cfg: GenEvalConfig,
  hooks: Hooks,
): Promise<GenEvalReport> {
  const refArtifacts = inputs.reference;
  if (!refArtifacts || refArtifacts.length !== 1)
    throw new Error('gen-eval: input "reference" must name exactly one stage');
  const reference = await readSampleSet(refArtifacts[0]!.path, {
    limit: cfg.samples,
    ...(cfg.referenceSplit ? { split: cfg.referenceSplit } : {}),
  });
  const extractorDir = inputs.extractor?.[0]?.path;
  let features: FeatureSession | undefined;
  if (extractorDir)
    features = await FeatureSession.open(join(extractorDir, 'classifier.onnx'), { threads: cfg.threads });
  const embed = async (set: SampleSet): Promise<{ data: Float32Array; dim: number }> => {
    if (!features) return { data: set.x, dim: set.dim };
    const parts: Float32Array[] = [];
    let fdim = 0;
    for (let a = 0; a < set.n; a += 512) {
      const b = Math.min(set.n, a + 512);
      const out = await features.run(set.x.subarray(a * set.dim, b * set.dim), b - a, set.dim);
      parts.push(Float32Array.from(out.features));
      fdim = out.featureDim;
    }
    const data = new Float32Array(set.n * fdim);
    let o = 0;
    for (const p of parts) {
      data.set(p, o);
      o += p.length;
    }
    return { data, dim: fdim };
  };
  const refEmb = await embed(reference);
  const prRows = (emb: { data: Float32Array; dim: number }, count: number) =>
    emb.data.subarray(0, Math.min(count, emb.data.length / emb.dim) * emb.dim);
  const rows: GenEvalRow[] = [];
  const names = Object.keys(inputs).filter((k) => k !== 'reference' && k !== 'extractor');
  if (names.length === 0) throw new Error('gen-eval: no candidates (inputs other than reference and extractor)');
  for (const [index, name] of names.entries()) {
    if (hooks.signal.aborted) throw new Error('gen-eval cancelled');
    const artifacts = inputs[name]!;
    const isGenerator = artifacts.every((a) => existsSync(join(a.path, GENERATOR_FILES.info)));
    let set: SampleSet;
    let row: Partial<GenEvalRow>;
    if (isGenerator) {
      const g = await generateWith(artifacts, cfg.samples, cfg.seed, cfg.threads);
      set = g.set;
      row = {
        kind: 'generator',
        nfe: 1,
        students: artifacts.length,
        parameters: g.infos[0]!.parameters,
        divergence: g.infos[0]!.divergence,
        msPerSample: g.msPerSample,
      };
    } else {
      if (artifacts.length !== 1)
        throw new Error(`gen-eval: candidate ${name} lists ${artifacts.length} stages that are not generators`);
      set = await readSampleSet(artifacts[0]!.path, { limit: cfg.samples });
      row = { kind: 'samples', nfe: Number(set.metadata['distillery.nfe'] ?? NaN), students: 1 };
    }
    if (set.dim !== reference.dim)
      throw new Error(`gen-eval: candidate ${name} has dimension ${set.dim}, reference ${reference.dim}`);
    const emb = await embed(set);
    const frechet = await frechetOfSets(refEmb.data, emb.data, emb.dim);
    // Each candidate's bootstrap has its own seed stream (seed + index), reproducible per run.
    const interval =
      cfg.bootstrap > 0
        ? await frechetBootstrap(refEmb.data, emb.data, emb.dim, cfg.bootstrap, cfg.seed + 1000 + index)
        : undefined;
    const pr = precisionRecall(prRows(refEmb, cfg.prSamples), prRows(emb, cfg.prSamples), emb.dim, cfg.k);
    const full: GenEvalRow = {
      name,
      ...(row as Omit<GenEvalRow, 'name' | 'frechet' | 'precision' | 'recall'>),
      frechet,
      ...(interval ? { frechetLow: interval.low, frechetHigh: interval.high } : {}),
      precision: pr.precision,
      recall: pr.recall,
    };
    if (cfg.modeCoverage) Object.assign(full, modeCoverage(reference, set.x, set.dim));
    rows.push(full);
    writeSamplePicture(join(outDir, `${name}.png`), set.x, set.labels, set.shape, set.numClasses);
    hooks.log(
      `${name}: frechet ${frechet.toFixed(4)}${interval ? ` [${interval.low.toFixed(4)}, ${interval.high.toFixed(4)}]` : ''}, precision ${pr.precision.toFixed(3)}, recall ${pr.recall.toFixed(3)}`,
    );
    hooks.progress(index + 1, names.length);
  }
  await features?.release();
  const report: GenEvalReport = {
    reference: { stage: refArtifacts[0]!.stage, samples: reference.n },
    featureSpace: extractorDir
      ? `penultimate layer of the domain classifier ${inputs.extractor![0]!.stage} (FID)`
      : 'raw coordinates',
    samples: cfg.samples,
    ...(cfg.bootstrap > 0 ? { bootstrap: { resamples: cfg.bootstrap, seed: cfg.seed + 1000, level: 0.95 } } : {}),
    rows,
  };
  writeFileAtomicSync(join(outDir, 'report.json'), JSON.stringify(report, null, 2));
  writeFileSync(join(outDir, 'report.md'), markdown(report));
  return report;
}

function markdown(r: GenEvalReport): string {
  const fd = r.featureSpace.startsWith('raw') ? 'Frechet (raw)' : 'FID (domain)';
  const ci = r.bootstrap !== undefined;
  const lines = [
    `Reference: ${r.reference.stage} (${r.reference.samples} samples); features: ${r.featureSpace}; ${r.samples} samples per generator.`,
    ...(ci
      ? [
          `Intervals: 95% percentile bootstrap over both sets, ${r.bootstrap!.resamples} resamples, seeds ${r.bootstrap!.seed} + candidate index.`,
        ]
      : []),
    '',
    `| model | NFE | students | ${fd} |${ci ? ' 95% interval |' : ''} precision | recall |${r.rows.some((x) => x.coverage !== undefined) ? ' mode coverage |' : ''}`,
    `|---|---|---|---|${ci ? '---|' : ''}---|---|${r.rows.some((x) => x.coverage !== undefined) ? '---|' : ''}`,
  ];
  for (const x of r.rows) {
    const range = ci ? ` [${x.frechetLow!.toFixed(3)}, ${x.frechetHigh!.toFixed(3)}] |` : '';
    lines.push(
      `| ${x.name} | ${x.nfe} | ${x.students} | ${x.frechet.toFixed(3)} |${range} ${x.precision.toFixed(3)} | ${x.recall.toFixed(3)} |${x.coverage !== undefined ? ` ${x.coverage.toFixed(2)} |` : ''}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
