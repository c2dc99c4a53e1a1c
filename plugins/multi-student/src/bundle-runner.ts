/**
 * MSD bundle: the format (manifest.json) and its reference runner. This module imports nothing
 * but onnxruntime-node (dynamically), so its compiled form doubles as the standalone runner
 * `msd-runner.mjs` that msd-bundle copies into every bundle.
 *
 * A bundle directory holds manifest.json (MsdBundleManifest), router.onnx and student_<k>.onnx.
 * Every model takes the same input (name and shape in the manifest, float32, [batch, ...shape],
 * preprocessed as at training time: student-train feeds pixels / 255, features as they are).
 *
 * Inference of one query x:
 *   1. k* = argmax router(x)                       (the partition; ties go to the lower index)
 *   2. z  = student_k*(x)                          (logits over partition k*'s classes, local order)
 *   3. global class = classMaps[k*][argmax z]
 * Only the router and one student run, so latency is router + one student.
 *
 * Composite scores over all C global classes (what the eval stage ranks and softmaxes):
 *   class classMaps[k*][j]           -> z_j
 *   class c of another partition j   -> min(z) - 1000 + max(log p_router(j), -100)
 * so softmax puts all mass on partition k* (exp(-1000) is 0 in float64) and the student's
 * distribution is kept there, while top-k beyond the chosen partition continues with the
 * classes of the next most probable partitions (ties: lower class id).
 */
import type * as Ort from 'onnxruntime-node';

export const MSD_BUNDLE_FORMAT = 'distillery-msd-bundle';

/** manifest.json of an MSD bundle. */
export interface MsdBundleManifest {
  format: typeof MSD_BUNDLE_FORMAT;
  version: 1;
  /** Size C of the global label space. */
  numClasses: number;
  /** Number of students K. */
  students: number;
  /** The one input every model takes: name, dims after the batch dim, element type. */
  input: { name: string; shape: number[]; type: 'float32' };
  /** Input preprocessing, in words (e.g. "pixels / 255, layout HWC"). */
  preprocessing: string;
  router: { file: string; sha256: string; parameters?: number };
  /** Student k: its model and the global id of each of its local classes. */
  studentModels: { file: string; sha256: string; classMap: number[]; parameters?: number }[];
  /** Partition (student) of each global class. */
  classToStudent: number[];
  /** How the partition was made (routing.json's strategy and seed). */
  partition: { strategy: string; seed: number };
}

/** Validates a parsed manifest.json; errors name the file and field. */
export function checkBundleManifest(raw: unknown, where: string): MsdBundleManifest {
  const m = raw as Partial<MsdBundleManifest> | null;
  if (!m || typeof m !== 'object' || m.format !== MSD_BUNDLE_FORMAT)
    throw new Error(`${where}: not an MSD bundle manifest (expected "format": "${MSD_BUNDLE_FORMAT}")`);
  if (m.version !== 1)
    throw new Error(`${where}: bundle version ${String(m.version)} is not supported (this build reads version 1)`);
  const C = m.numClasses;
  if (!Number.isInteger(C) || (C as number) < 1) throw new Error(`${where}: numClasses must be a positive integer`);
  if (!m.router || typeof m.router.file !== 'string') throw new Error(`${where}: router.file is missing`);
  if (!m.input || typeof m.input.name !== 'string' || !Array.isArray(m.input.shape))
    throw new Error(`${where}: input {name, shape} is missing`);
  if (!Array.isArray(m.studentModels) || m.studentModels.length !== m.students || m.students < 1)
    throw new Error(`${where}: studentModels must list ${String(m.students)} students`);
  if (!Array.isArray(m.classToStudent) || m.classToStudent.length !== C)
    throw new Error(`${where}: classToStudent must have ${C} entries`);
  const seen = new Int32Array(C as number).fill(-1);
  m.studentModels.forEach((s, k) => {
    if (!s || typeof s.file !== 'string' || !Array.isArray(s.classMap) || s.classMap.length === 0)
      throw new Error(`${where}: studentModels[${k}] needs file and a non-empty classMap`);
    s.classMap.forEach((g, j) => {
      if (!Number.isInteger(g) || g < 0 || g >= (C as number))
        throw new Error(`${where}: studentModels[${k}].classMap[${j}] = ${g} is outside [0, ${C})`);
      if (seen[g] !== -1) throw new Error(`${where}: class ${g} belongs to students ${seen[g]} and ${k}`);
      if (m.classToStudent![g] !== k)
        throw new Error(
          `${where}: classToStudent[${g}] = ${m.classToStudent![g]} but studentModels[${k}].classMap lists it`,
        );
      seen[g] = k;
    });
  });
  const missing = seen.indexOf(-1);
  if (missing >= 0) throw new Error(`${where}: class ${missing} belongs to no student`);
  return m as MsdBundleManifest;
}

/** Result of routing a batch: per-sample partition, global top-1 and composite scores. */
export interface MsdPrediction {
  /** Chosen student of each sample. */
  partition: Int32Array;
  /** Predicted global class of each sample. */
  label: Int32Array;
  /** Composite scores, rows x C row-major (see module comment). */
  scores: Float32Array;
}

/** Row-wise argmax; ties go to the lower index. */
export function argmaxRows(values: ArrayLike<number>, rows: number, width: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let j = 1; j < width; j++)
      if ((values[r * width + j] as number) > (values[r * width + best] as number)) best = j;
    out[r] = best;
  }
  return out;
}

/** An opened bundle: one session per model, all with the same options. */
export class MsdBundle {
  private constructor(
    private readonly ort: typeof Ort,
    readonly dir: string,
    readonly manifest: MsdBundleManifest,
    readonly router: Ort.InferenceSession,
    readonly students: Ort.InferenceSession[],
  ) {}

  /** Opens dir/manifest.json and its models. `options` go to every InferenceSession. */
  static async open(dir: string, options: Ort.InferenceSession.SessionOptions = {}): Promise<MsdBundle> {
    const { readFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const file = join(dir, 'manifest.json');
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(file, 'utf8'));
    } catch (error) {
      throw new Error(`${file}: cannot read (${(error as Error).message})`);
    }
    const manifest = checkBundleManifest(raw, file);
    const ort = await import('onnxruntime-node');
    const sessions: Ort.InferenceSession[] = [];
    const open = async (name: string) => {
      try {
        const s = await ort.InferenceSession.create(join(dir, name), {
          graphOptimizationLevel: 'all',
          executionProviders: ['cpu'],
          ...options,
        });
        sessions.push(s);
        return s;
      } catch (error) {
        throw new Error(`MSD bundle ${dir}: cannot load ${name} (${(error as Error).message.split('\n')[0]})`);
      }
    };
    try {
      const router = await open(manifest.router.file);
      const students: Ort.InferenceSession[] = [];
      for (const s of manifest.studentModels) students.push(await open(s.file));
      return new MsdBundle(ort, dir, manifest, router, students);
    } catch (error) {
      for (const s of sessions) await s.release();
      throw error;
    }
  }

  /** Runs one model on rows x ...shape of `input`; returns rows x width outputs (first output). */
  private async runModel(
    session: Ort.InferenceSession,
    input: Float32Array,
    rows: number,
    what: string,
  ): Promise<{ data: Float32Array; width: number }> {
    const dims = this.manifest.input.shape;
    const tensor = new this.ort.Tensor('float32', input, [rows, ...dims]);
    const out = await session.run({ [this.manifest.input.name]: tensor });
    const result = out[session.outputNames[0]!]!;
    const width = result.dims[1] as number;
    if (result.dims.length !== 2)
      throw new Error(
        `MSD bundle ${this.dir}: ${what} output has shape [${result.dims.join(', ')}]; need [batch, classes]`,
      );
    const data = Float32Array.from(result.data as Float32Array);
    for (const t of Object.values(out)) t.dispose();
    for (let i = 0; i < data.length; i++)
      if (!Number.isFinite(data[i]!))
        throw new Error(`MSD bundle ${this.dir}: ${what} output is not finite for row ${Math.floor(i / width)}`);
    return { data, width };
  }

  /** Router logits for `rows` samples (flat float32 input). */
  async routerLogits(input: Float32Array, rows: number): Promise<Float32Array> {
    const { data, width } = await this.runModel(this.router, input, rows, 'router');
    if (width !== this.manifest.students)
      throw new Error(`MSD bundle ${this.dir}: router outputs ${width} scores for ${this.manifest.students} students`);
    return data;
  }

  /** Local logits of student k for `rows` samples. */
  async studentLogits(k: number, input: Float32Array, rows: number): Promise<Float32Array> {
    const n = this.manifest.studentModels[k]!.classMap.length;
    const { data, width } = await this.runModel(this.students[k]!, input, rows, `student ${k}`);
    if (width !== n)
      throw new Error(`MSD bundle ${this.dir}: student ${k} outputs ${width} classes, its class map has ${n}`);
    return data;
  }

  /**
   * Routes each sample to one student: the router's argmax, or `partitionOverride` when the
   * condition is known (e.g. the vertical of the query). Each student runs once, on its rows.
   */
  async predict(
    input: Float32Array,
    rows: number,
    partitionOverride?: Int32Array,
  ): Promise<MsdPrediction & { routerLogits: Float32Array | undefined }> {
    const K = this.manifest.students;
    const width = input.length / Math.max(rows, 1);
    const routerLogits = partitionOverride ? undefined : await this.routerLogits(input, rows);
    const partition = partitionOverride ?? argmaxRows(routerLogits!, rows, K);
    const logRouter = routerLogits ? logSoftmaxRows(routerLogits, rows, K) : undefined;
    const C = this.manifest.numClasses;
    const scores = new Float32Array(rows * C);
    const label = new Int32Array(rows);
    for (let k = 0; k < K; k++) {
      const members: number[] = [];
      for (let r = 0; r < rows; r++) if (partition[r] === k) members.push(r);
      if (members.length === 0) continue;
      const sub = members.length === rows ? input : new Float32Array(members.length * width);
      if (sub !== input) members.forEach((r, i) => sub.set(input.subarray(r * width, (r + 1) * width), i * width));
      const z = await this.studentLogits(k, sub, members.length);
      const map = this.manifest.studentModels[k]!.classMap;
      const n = map.length;
      members.forEach((r, i) => {
        let lo = Infinity;
        let best = 0;
        for (let j = 0; j < n; j++) {
          const v = z[i * n + j]!;
          if (v < lo) lo = v;
          if (v > z[i * n + best]!) best = j;
        }
        for (let c = 0; c < C; c++) {
          const j = this.manifest.classToStudent[c]!;
          scores[r * C + c] = lo - 1000 + (logRouter ? Math.max(logRouter[r * K + j]!, -100) : -100);
        }
        for (let j = 0; j < n; j++) scores[r * C + map[j]!] = z[i * n + j]!;
        label[r] = map[best]!;
      });
    }
    return { partition, label, scores, routerLogits };
  }

  async release(): Promise<void> {
    await this.router.release();
    for (const s of this.students) await s.release();
  }
}

function logSoftmaxRows(values: Float32Array, rows: number, width: number): Float64Array {
  const out = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let j = 0; j < width; j++) m = Math.max(m, values[r * width + j]!);
    let s = 0;
    for (let j = 0; j < width; j++) s += Math.exp(values[r * width + j]! - m);
    const lse = m + Math.log(s);
    for (let j = 0; j < width; j++) out[r * width + j] = values[r * width + j]! - lse;
  }
  return out;
}

/**
 * Command line of the standalone copy (`node msd-runner.mjs <bundle dir> <input.json>`): the
 * input file holds a JSON array of samples (each a flat array of preprocessed values); prints
 * one JSON line per sample: {"partition": k, "label": global class}.
 */
async function main(argv: string[]): Promise<void> {
  const [dir, inputFile] = argv;
  if (!dir || !inputFile) {
    process.stderr.write('usage: node msd-runner.mjs <bundle dir> <input.json>\n');
    process.exitCode = 2;
    return;
  }
  const { readFile } = await import('node:fs/promises');
  const samples = JSON.parse(await readFile(inputFile, 'utf8')) as number[][];
  const bundle = await MsdBundle.open(dir);
  try {
    const width = bundle.manifest.input.shape.reduce((a, b) => a * b, 1);
    const input = new Float32Array(samples.length * width);
    samples.forEach((s, i) => {
      if (s.length !== width)
        throw new Error(`${inputFile}: sample ${i} has ${s.length} values, the bundle takes ${width}`);
      input.set(s, i * width);
    });
    const p = await bundle.predict(input, samples.length);
    for (let i = 0; i < samples.length; i++)
      process.stdout.write(`${JSON.stringify({ partition: p.partition[i], label: p.label[i] })}\n`);
  } finally {
    await bundle.release();
  }
}

// Run as a script (the bundle's msd-runner.mjs), not when imported.
if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href)
  await main(process.argv.slice(2));
