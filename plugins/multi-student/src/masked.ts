/**
 * Baseline for MSD classification, compared like for like: ONE student (trained on all C classes)
 * told the partition. Student k of the bundle is that same model with its logits gathered at
 * partition k's classes (ONNX Gather on axis 1, local order = ascending global ids), which is the
 * single student's logits masked to partition k. Packed with the same router as an MSD bundle, the
 * eval stage's "known partition" column is then the single student restricted to the true
 * partition (the information the MSD bundle's known-partition column gets), and its end-to-end
 * column the single student restricted to the router's choice.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readModelFile, writeModelFile, type OnnxModel } from '@distillery/runtime/onnx';
import { writeBundle, type BundleModelSource } from './bundle.js';
import type { MsdBundleManifest } from './bundle-runner.js';
import type { RoutingTable } from './partition.js';

/** `model` with a new first output: its first output's columns `classes`, in that order. */
export function gatherColumns(model: OnnxModel, classes: readonly number[], where: string): OnnxModel {
  const out = model.graph.outputs[0];
  const width = out?.shape?.at(-1);
  if (!out || out.shape?.length !== 2 || typeof width !== 'number')
    throw new Error(`${where}: first output needs shape [batch, classes], got ${JSON.stringify(out?.shape)}`);
  for (const c of classes)
    if (!Number.isInteger(c) || c < 0 || c >= width)
      throw new Error(`${where}: class ${c} is outside the model's ${width} outputs`);
  const taken = new Set([
    ...model.graph.initializers.map((t) => t.name),
    ...model.graph.nodes.flatMap((n) => n.outputs),
    ...model.graph.inputs.map((i) => i.name),
  ]);
  const fresh = (base: string): string => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };
  const indices = fresh('msd.partition_classes');
  const gathered = fresh('msd.partition_logits');
  return {
    ...model,
    graph: {
      ...model.graph,
      initializers: [
        ...model.graph.initializers,
        {
          name: indices,
          dataType: 'int64',
          dims: [classes.length],
          data: BigInt64Array.from(classes.map((c) => BigInt(c))),
        },
      ],
      nodes: [
        ...model.graph.nodes,
        {
          name: fresh('msd.gather_partition'),
          opType: 'Gather',
          domain: '',
          inputs: [out.name, indices],
          outputs: [gathered],
          attributes: { axis: { i: 1 } },
        },
      ],
      outputs: [
        { name: gathered, elemType: out.elemType, shape: [out.shape[0] ?? 'batch', classes.length] },
        ...model.graph.outputs.slice(1),
      ],
    },
  };
}

export interface MaskedBundleOptions {
  routing: RoutingTable;
  router: BundleModelSource;
  /** The single student: C outputs over the global classes. */
  model: BundleModelSource;
  outDir: string;
  preprocessing: string;
}

/** Writes the bundle: K gathered copies of the single model + the router (format of ./bundle-runner.ts). */
export async function writeMaskedBundle(o: MaskedBundleOptions): Promise<MsdBundleManifest> {
  const where = `model ${o.model.stage} (${o.model.path})`;
  const model = await readModelFile(o.model.path);
  const width = model.graph.outputs[0]?.shape?.at(-1);
  if (width !== o.routing.numClasses)
    throw new Error(
      `${where}: outputs ${String(width)} classes, the routing table has ${o.routing.numClasses}; the single student must cover every class`,
    );
  // Gathered models are written outside outDir first: writeBundle copies its sources into outDir.
  const staging = mkdtempSync(join(o.outDir, '.masked-'));
  try {
    const students = o.routing.partitions.map((classes, k) => {
      const path = join(staging, `student_${k}.onnx`);
      writeModelFile(path, gatherColumns(model, classes, where));
      return { stage: `${o.model.stage} masked to partition ${k}`, path };
    });
    return await writeBundle({
      routing: o.routing,
      router: o.router,
      students,
      outDir: o.outDir,
      preprocessing: o.preprocessing,
    });
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
