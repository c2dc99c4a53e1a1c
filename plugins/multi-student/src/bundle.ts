/**
 * Writing an MSD bundle (format: ./bundle-runner.ts): copies the router and the K student models,
 * checks that they fit together (same input, router width K, student k width n_k), and writes
 * manifest.json last. The standalone runner msd-runner.mjs is copied alongside.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readModelFile, type OnnxModel } from '@distillery/runtime/onnx';
import { writeFileAtomicSync } from '@distillery/core/plugin';
import { MSD_BUNDLE_FORMAT, checkBundleManifest, type MsdBundleManifest } from './bundle-runner.js';
import type { RoutingTable } from './partition.js';

/** One model going into a bundle: the upstream stage id (for messages) and its .onnx file. */
export interface BundleModelSource {
  stage: string;
  path: string;
}

export interface WriteBundleOptions {
  routing: RoutingTable;
  router: BundleModelSource;
  /** Student k at position k. */
  students: BundleModelSource[];
  outDir: string;
  preprocessing: string;
}

/** Elements of floating-point initializers (the eval stage counts parameters the same way). */
export function countParameters(model: OnnxModel): number {
  let n = 0;
  for (const t of model.graph.initializers)
    if (t.dataType === 'float32' || t.dataType === 'float64' || t.dataType === 'float16' || t.dataType === 'bfloat16')
      n += t.dims.reduce((a, b) => a * b, 1);
  return n;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The single non-initializer input and the first output's last dim of a model. */
function modelIo(
  model: OnnxModel,
  where: string,
): { input: { name: string; shape: number[]; type: string }; width: number } {
  const inits = new Set(model.graph.initializers.map((t) => t.name));
  const inputs = model.graph.inputs.filter((i) => !inits.has(i.name));
  if (inputs.length !== 1)
    throw new Error(`${where}: expected one input, found ${inputs.length} (${inputs.map((i) => i.name).join(', ')})`);
  const input = inputs[0]!;
  const dims = input.shape?.slice(1) ?? [];
  if (!input.shape || !dims.every((d) => typeof d === 'number' && d > 0))
    throw new Error(
      `${where}: input ${input.name} needs shape [batch, fixed dims...], got ${JSON.stringify(input.shape)}`,
    );
  const out = model.graph.outputs[0];
  const width = out?.shape?.at(-1);
  if (!out || out.shape?.length !== 2 || typeof width !== 'number')
    throw new Error(`${where}: first output needs shape [batch, classes], got ${JSON.stringify(out?.shape)}`);
  return { input: { name: input.name, shape: dims as number[], type: input.elemType }, width };
}

export async function writeBundle(o: WriteBundleOptions): Promise<MsdBundleManifest> {
  const t = o.routing;
  if (o.students.length !== t.students)
    throw new Error(
      `the routing table has ${t.students} partitions but ${o.students.length} student models are bound (${o.students.map((s) => s.stage).join(', ')})`,
    );
  const routerModel = await readModelFile(o.router.path);
  const routerIo = modelIo(routerModel, `router ${o.router.stage} (${o.router.path})`);
  if (routerIo.input.type !== 'float32')
    throw new Error(
      `router ${o.router.stage}: input ${routerIo.input.name} is ${routerIo.input.type}; bundles take float32`,
    );
  if (routerIo.width !== t.students)
    throw new Error(
      `router ${o.router.stage} (${o.router.path}) outputs ${routerIo.width} scores, the routing table has ${t.students} partitions (train the router on the partition-subset "router" dataset)`,
    );
  const studentModels: MsdBundleManifest['studentModels'] = [];
  const files: [string, string][] = [[o.router.path, 'router.onnx']];
  for (let k = 0; k < o.students.length; k++) {
    const s = o.students[k]!;
    const where = `student ${k} ${s.stage} (${s.path})`;
    const model = await readModelFile(s.path);
    const io = modelIo(model, where);
    if (
      io.input.name !== routerIo.input.name ||
      JSON.stringify(io.input.shape) !== JSON.stringify(routerIo.input.shape) ||
      io.input.type !== routerIo.input.type
    ) {
      throw new Error(
        `${where}: input ${io.input.name} [${io.input.shape.join(', ')}] differs from the router's ${routerIo.input.name} [${routerIo.input.shape.join(', ')}]`,
      );
    }
    const classMap = t.partitions[k]!;
    if (io.width !== classMap.length)
      throw new Error(
        `${where}: outputs ${io.width} classes, partition ${k} has ${classMap.length} (is the student list in partition order?)`,
      );
    const file = `student_${k}.onnx`;
    files.push([s.path, file]);
    studentModels.push({
      file,
      sha256: sha256(readFileSync(s.path)),
      classMap: [...classMap],
      parameters: countParameters(model),
    });
  }
  const manifest: MsdBundleManifest = {
    format: MSD_BUNDLE_FORMAT,
    version: 1,
    numClasses: t.numClasses,
    students: t.students,
    input: { name: routerIo.input.name, shape: routerIo.input.shape, type: 'float32' },
    preprocessing: o.preprocessing,
    router: {
      file: 'router.onnx',
      sha256: sha256(readFileSync(o.router.path)),
      parameters: countParameters(routerModel),
    },
    studentModels,
    classToStudent: [...t.classToStudent],
    partition: { strategy: t.strategy, seed: t.seed },
  };
  checkBundleManifest(manifest, 'bundle manifest');
  for (const [from, to] of files) copyFileSync(from, join(o.outDir, to));
  copyFileSync(fileURLToPath(new URL('./bundle-runner.js', import.meta.url)), join(o.outDir, 'msd-runner.mjs'));
  writeFileAtomicSync(join(o.outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 1)}\n`);
  return manifest;
}

/**
 * Orders fan-out student artifacts by partition: position k in the binding, checked against a
 * fan-out suffix that names the partition (`student@1`, `student@k=1,size=s`).
 */
export function orderStudents(artifacts: readonly { stage: string; path: string }[]): BundleModelSource[] {
  return artifacts.map((a, k) => {
    const suffix = a.stage.includes('@') ? a.stage.slice(a.stage.indexOf('@') + 1) : undefined;
    const named =
      suffix === undefined
        ? undefined
        : /^\d+$/.test(suffix)
          ? Number(suffix)
          : /(?:^|,)k=(\d+)(?:,|$)/.exec(suffix)?.[1];
    if (named !== undefined && Number(named) !== k)
      throw new Error(
        `input "students": ${a.stage} is bound at position ${k} but its fan-out item names partition ${named}; list the students in partition order`,
      );
    return { stage: a.stage, path: join(a.path, 'model.onnx') };
  });
}
