/**
 * Evaluating detectors (ONNX, ./model-contract.ts) on one split of a detection data set: COCO
 * mAP through plugins/eval's evaluator (the dataset stage's coco/<split>.json is the ground
 * truth), parameters and FLOPs of the graph, and latency in onnxruntime with the same settings for
 * every model; then MedDet's table (speed-up, parameter and FLOP reduction of each student against
 * the reference teacher) and, over a seed fan-out (models named role@seed), mean ± std per role and
 * paired t-intervals of AP differences between roles.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  COCO_STAT_KEYS,
  evaluateCoco,
  measureLatency,
  modelCost,
  pairedTInterval,
  parseCocoGroundTruth,
  roleOf,
  suffixOf as seedOf,
  parseJsonText,
  summarize,
  type CocoDetection,
  type CocoId,
  type CocoStats,
  type LatencyStats,
  type PairedInterval,
  type PairedVerdict,
  type SeedSummary,
} from '@distillery/plugin-eval';
import { readModelFile } from '@distillery/runtime/onnx';
import { decodeCenterNet, type CenterNetHeads } from './centernet.js';
import { detectorBatches, type DetectorBatch } from './infer.js';
import {
  DETECTOR_INPUT,
  DETECTOR_METADATA_KEY,
  parseDetectorGeometry,
  type DetectorGeometry,
} from './model-contract.js';
import { nmsByClass } from './nms.js';

export const DETECT_REPORT_FORMAT = 'distillery-detect-report';

export interface DetectEvalModel {
  /** Stage id (role@seed in a fan-out). */
  name: string;
  role: 'teacher' | 'student';
  modelPath: string;
}

export interface DetectEvalOptions {
  datasetDir: string;
  split: string;
  models: DetectEvalModel[];
  /** Decoding: peaks kept per image, score threshold, class-wise NMS IoU (1 = no NMS). */
  topK: number;
  scoreThreshold: number;
  nmsIoU: number;
  batchSize: number;
  threads: number;
  latency: { batch: number; warmup: number; iterations: number };
  /** Paired differences a - b of roles over seeds; default: every student role against `baseline`. */
  comparisons?: { a: string; b: string }[];
  /** Role the default comparisons subtract (e.g. the hard-label student). */
  baseline?: string;
  confidence: number;
  signal?: AbortSignal;
  log?: (message: string) => void;
}

export interface DetectModelReport {
  name: string;
  role: 'teacher' | 'student';
  coco: CocoStats;
  detections: number;
  parameters: number;
  flops: number;
  latency: LatencyStats;
}

/** MedDet's efficiency columns: ratios are teacher / student. */
export interface DetectEfficiencyRow {
  teacher: string;
  student: string;
  apDifference: number;
  speedup: number;
  parameterReduction: number;
  flopReduction: number;
}

export interface DetectRoleSummary {
  role: string;
  seeds: string[];
  AP: SeedSummary;
  AP50: SeedSummary;
  AP75: SeedSummary;
}

export interface DetectComparison {
  a: string;
  b: string;
  metric: 'AP' | 'AP50';
  seeds: string[];
  interval: PairedInterval;
  verdict: PairedVerdict;
}

export interface DetectReport {
  format: typeof DETECT_REPORT_FORMAT;
  version: 1;
  dataset: { split: string; images: number; annotations: number; numClasses: number };
  decoding: { topK: number; scoreThreshold: number; nmsIoU: number };
  latencySettings: { batch: number; threads: 1; warmup: number; iterations: number };
  models: DetectModelReport[];
  efficiency: DetectEfficiencyRow[];
  seeds: { roles: DetectRoleSummary[]; comparisons: DetectComparison[]; confidence: number };
}

/** COCO detections of one model on the split (image ids from coco/<split>.json's file names). */
export async function detectOnSplit(
  model: DetectEvalModel,
  geometry: DetectorGeometry,
  o: DetectEvalOptions,
  imageIds: ReadonlyMap<string, CocoId>,
): Promise<CocoDetection[]> {
  const out: CocoDetection[] = [];
  for await (const b of detectorBatches({
    modelPath: model.modelPath,
    datasetDir: o.datasetDir,
    split: o.split,
    batchSize: o.batchSize,
    feature: false,
    threads: o.threads,
    ...(o.signal ? { signal: o.signal } : {}),
  })) {
    for (let r = 0; r < b.rows; r++) {
      const id = b.ids[r]!;
      const imageId = imageIds.get(id);
      if (imageId === undefined)
        throw new Error(`${join(o.datasetDir, 'coco', `${o.split}.json`)}: no image with file_name "${id}"`);
      const heads = headsOf(b, r, geometry);
      const found = nmsByClass(decodeCenterNet(heads, { topK: o.topK, scoreThreshold: o.scoreThreshold }), o.nmsIoU);
      for (const d of found) out.push({ imageId, categoryId: d.classId, bbox: d.bbox, score: d.score });
    }
  }
  return out;
}

/** One image's maps of a batch as CenterNetHeads (views, no copies). */
function headsOf(b: DetectorBatch, r: number, g: DetectorGeometry): CenterNetHeads {
  const [width, height] = [g.inputWidth / g.stride, g.inputHeight / g.stride];
  const cells = width * height;
  const C = g.numClasses;
  return {
    width,
    height,
    numClasses: C,
    stride: g.stride,
    heatmap: b.heatmap.subarray(r * C * cells, (r + 1) * C * cells),
    size: b.size.subarray(r * 2 * cells, (r + 1) * 2 * cells),
    offset: b.offset.subarray(r * 2 * cells, (r + 1) * 2 * cells),
  };
}

/** Scores every model; see the module comment. */
export async function evaluateDetectors(o: DetectEvalOptions): Promise<DetectReport> {
  if (o.models.length === 0) throw new Error('detect-eval: no models (bind the inputs "teacher" and/or "model")');
  const gtPath = join(o.datasetDir, 'coco', `${o.split}.json`);
  let gtText: string;
  try {
    gtText = readFileSync(gtPath, 'utf8');
  } catch {
    throw new Error(
      `${gtPath}: no COCO ground truth for split "${o.split}" (a dataset stage with format detection-canvas writes it)`,
    );
  }
  const gtJson = parseJsonText(gtText, gtPath);
  const gt = parseCocoGroundTruth(gtJson, gtPath);
  const imageIds = new Map<string, CocoId>();
  const images = (gtJson as { images: { id: CocoId; file_name?: string }[] }).images;
  for (const image of images) if (typeof image.file_name === 'string') imageIds.set(image.file_name, image.id);
  const models: DetectModelReport[] = [];
  let geometry0: DetectorGeometry | undefined;
  for (const m of o.models) {
    const onnx = await readModelFile(m.modelPath);
    const g = parseDetectorGeometry(onnx.metadata[DETECTOR_METADATA_KEY], m.modelPath);
    geometry0 ??= g;
    if (g.numClasses !== geometry0.numClasses)
      throw new Error(`${m.modelPath}: ${g.numClasses} classes, ${o.models[0]!.modelPath} has ${geometry0.numClasses}`);
    const detections = await detectOnSplit(m, g, o, imageIds);
    const coco = evaluateCoco(gt, detections).stats;
    const cost = modelCost(onnx, { [DETECTOR_INPUT]: [1, g.inputHeight, g.inputWidth, 1] });
    const latency = await measureLatency(m.modelPath, [o.latency.batch, g.inputHeight, g.inputWidth, 1], {
      warmup: o.latency.warmup,
      iterations: o.latency.iterations,
      intraOpNumThreads: 1,
      seed: 1,
    });
    o.log?.(
      `${m.name}: AP ${coco.AP.toFixed(4)}, AP50 ${coco.AP50.toFixed(4)}, ${cost.parameters} parameters, ${(cost.flops / 1e6).toFixed(1)} MFLOPs, p50 ${latency.p50Ms.toFixed(2)} ms`,
    );
    models.push({
      name: m.name,
      role: m.role,
      coco,
      detections: detections.length,
      parameters: cost.parameters,
      flops: cost.flops,
      latency,
    });
  }
  const teacher = models.find((m) => m.role === 'teacher');
  const efficiency: DetectEfficiencyRow[] = teacher
    ? models
        .filter((m) => m.role === 'student')
        .map((s) => ({
          teacher: teacher.name,
          student: s.name,
          apDifference: s.coco.AP - teacher.coco.AP,
          speedup: teacher.latency.p50Ms / s.latency.p50Ms,
          parameterReduction: teacher.parameters / s.parameters,
          flopReduction: teacher.flops / s.flops,
        }))
    : [];
  return {
    format: DETECT_REPORT_FORMAT,
    version: 1,
    dataset: {
      split: o.split,
      images: gt.imageIds.length,
      annotations: gt.annotations.length,
      numClasses: geometry0!.numClasses,
    },
    decoding: { topK: o.topK, scoreThreshold: o.scoreThreshold, nmsIoU: o.nmsIoU },
    latencySettings: { batch: o.latency.batch, threads: 1, warmup: o.latency.warmup, iterations: o.latency.iterations },
    models,
    efficiency,
    seeds: seedStatistics(models, o),
  };
}

/**
 * Roles with at least two seeds: mean ± std of AP, AP50, AP75; comparisons paired by seed (the
 * seeds both roles have). Default comparisons: every student role against `baseline`.
 */
export function seedStatistics(
  models: readonly Pick<DetectModelReport, 'name' | 'role' | 'coco'>[],
  o: Pick<DetectEvalOptions, 'comparisons' | 'baseline' | 'confidence'>,
): DetectReport['seeds'] {
  const byRole = new Map<string, Map<string, CocoStats>>();
  for (const m of models) {
    const seed = seedOf(m.name);
    if (seed === undefined) continue;
    const role = roleOf(m.name);
    if (!byRole.has(role)) byRole.set(role, new Map());
    byRole.get(role)!.set(seed, m.coco);
  }
  const roles: DetectRoleSummary[] = [];
  for (const [role, seeds] of byRole) {
    if (seeds.size < 2) continue;
    const values = (k: keyof CocoStats) => [...seeds.values()].map((s) => s[k]);
    roles.push({
      role,
      seeds: [...seeds.keys()],
      AP: summarize(values('AP'), `${role} AP`),
      AP50: summarize(values('AP50'), `${role} AP50`),
      AP75: summarize(values('AP75'), `${role} AP75`),
    });
  }
  const studentRoles = [...new Set(models.filter((m) => m.role === 'student').map((m) => roleOf(m.name)))];
  let pairs = o.comparisons;
  if (!pairs) {
    pairs = [];
    if (o.baseline && byRole.has(o.baseline))
      for (const r of studentRoles) if (r !== o.baseline && byRole.has(r)) pairs.push({ a: r, b: o.baseline });
  }
  const comparisons: DetectComparison[] = [];
  for (const [i, { a, b }] of pairs.entries()) {
    const A = byRole.get(a);
    const B = byRole.get(b);
    if (!A || !B)
      throw new Error(
        `comparisons[${i}]: role "${!A ? a : b}" has no seeded models (roles: ${[...byRole.keys()].join(', ') || 'none'})`,
      );
    const seeds = [...A.keys()].filter((s) => B.has(s));
    if (seeds.length < 2)
      throw new Error(`comparisons[${i}]: ${a} and ${b} share ${seeds.length} seed(s); a paired interval needs 2`);
    for (const metric of ['AP', 'AP50'] as const) {
      const interval = pairedTInterval(
        seeds.map((s) => A.get(s)![metric]),
        seeds.map((s) => B.get(s)![metric]),
        o.confidence,
        `${a} - ${b} (${metric})`,
      );
      comparisons.push({ a, b, metric, seeds, interval, verdict: interval.verdict });
    }
  }
  return { roles, comparisons, confidence: o.confidence };
}

const pct = (v: number) => (v < 0 ? 'n/a' : (100 * v).toFixed(2));

/** report.md: per-model COCO metrics and cost, MedDet's efficiency table, seed statistics. */
export function renderDetectMarkdown(r: DetectReport): string {
  const lines = [
    `# Detection evaluation: split "${r.dataset.split}" (${r.dataset.images} images, ${r.dataset.annotations} objects, ${r.dataset.numClasses} classes)`,
    '',
    `Decoding: 3x3 peaks, top ${r.decoding.topK}, score > ${r.decoding.scoreThreshold}, class-wise NMS at IoU ${r.decoding.nmsIoU}. Latency: onnxruntime, 1 thread, batch ${r.latencySettings.batch}, median of ${r.latencySettings.iterations} runs after ${r.latencySettings.warmup} warm-up runs. AP in %; -1 (n/a) where the range has no objects.`,
    '',
    `| model | role | ${COCO_STAT_KEYS.slice(0, 6).join(' | ')} | AR100 | params | MFLOPs | p50 ms |`,
    `|---|---|${COCO_STAT_KEYS.slice(0, 6)
      .map(() => '---:')
      .join('|')}|---:|---:|---:|---:|`,
  ];
  for (const m of r.models)
    lines.push(
      `| ${m.name} | ${m.role} | ${COCO_STAT_KEYS.slice(0, 6)
        .map((k) => pct(m.coco[k]))
        .join(
          ' | ',
        )} | ${pct(m.coco.AR100)} | ${m.parameters} | ${(m.flops / 1e6).toFixed(2)} | ${m.latency.p50Ms.toFixed(2)} |`,
    );
  if (r.efficiency.length > 0) {
    lines.push(
      '',
      `## Against the teacher ${r.efficiency[0]!.teacher} (MedDet's table; ratios teacher / student)`,
      '',
      '| student | AP - teacher AP | speed-up | parameter reduction | FLOP reduction |',
      '|---|---:|---:|---:|---:|',
    );
    for (const e of r.efficiency)
      lines.push(
        `| ${e.student} | ${(100 * e.apDifference).toFixed(2)} | ${e.speedup.toFixed(2)}x | ${e.parameterReduction.toFixed(2)}x | ${e.flopReduction.toFixed(2)}x |`,
      );
  }
  if (r.seeds.roles.length > 0) {
    lines.push(
      '',
      '## Over seeds (mean ± sample std, AP in %)',
      '',
      '| role | seeds | AP | AP50 | AP75 |',
      '|---|---|---:|---:|---:|',
    );
    const ms = (s: SeedSummary) => `${(100 * s.mean).toFixed(2)} ± ${(100 * s.std).toFixed(2)}`;
    for (const s of r.seeds.roles)
      lines.push(`| ${s.role} | ${s.seeds.join(', ')} | ${ms(s.AP)} | ${ms(s.AP50)} | ${ms(s.AP75)} |`);
  }
  if (r.seeds.comparisons.length > 0) {
    lines.push(
      '',
      `## Paired differences over seeds (${Math.round(100 * r.seeds.confidence)}% t-interval, points of AP)`,
      '',
      '| a - b | metric | seeds | mean difference | interval | verdict |',
      '|---|---|---|---:|---|---|',
    );
    for (const c of r.seeds.comparisons)
      lines.push(
        `| ${c.a} - ${c.b} | ${c.metric} | ${c.seeds.join(', ')} | ${(100 * c.interval.meanDifference).toFixed(2)} | [${(100 * c.interval.low).toFixed(2)}, ${(100 * c.interval.high).toFixed(2)}] | ${c.verdict} |`,
      );
  }
  return `${lines.join('\n')}\n`;
}
