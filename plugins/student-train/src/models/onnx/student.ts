/**
 * A student imported from an ONNX file (`student: { arch: onnx, model: <path> }`): the graph runs on
 * tfjs node by node (ops.ts), its float initializers become trainable variables (batch-norm running
 * statistics: buffers updated in training mode), and export writes the same graph back with the
 * trained values in those initializers (same inputs, outputs, nodes and opset).
 *
 * Which initializers are trained: every float32 initializer with more than one element, and any
 * float initializer in a weight slot (Gemm B / C, MatMul B, Conv W / B, BatchNormalization scale /
 * bias), except BatchNormalization means and variances (buffers) and names in `freeze`. Other
 * initializers (int64 shapes, scalar constants such as GELU's sqrt(2)) stay constants.
 *
 * Layouts: a Conv filter is held as HWIO and a Gemm transB weight as [K, N], the layouts of
 * tools/core's conv2d and dense, so the imported graph trains on the same kernels as the built-in
 * students; rank-4 activations run as NHWC (values.ts).
 */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { decodeModel, type OnnxModel, type OnnxNode, type OnnxTensor } from '@distillery/runtime/onnx';
import type { NamedVariable } from '@distillery/runtime/optim';
import { Rng } from '../../rng.js';
import type { OnnxStudentConfig, Student, TfjsLayersStudentConfig } from '../types.js';
import { hostFromTensor, OPS, type OpContext, type WeightLayout } from './ops.js';
import { onnxShape, product, tensorValue, toNhwc, type HostValue, type Value } from './values.js';

let nextVariableId = 0;

/** A trained initializer: its variable holds the values in `layout`. */
interface ImportedParam {
  name: string;
  variable: tf.Variable;
  layout: WeightLayout;
  /** ONNX dims of the initializer. */
  dims: number[];
  /** What the first reading node uses it as (for reinit). */
  role: 'weight' | 'bias' | 'bn-scale' | 'bn-bias' | 'bn-mean' | 'bn-var' | 'other';
  /** Fan-in of a weight (reinit's He-uniform limit). */
  fanIn: number;
}

/** Weight slots: op type -> input index -> role and the layout the op reads it in. */
const WEIGHT_SLOTS: Record<
  string,
  Record<number, { role: ImportedParam['role']; layout: (node: OnnxNode) => WeightLayout }>
> = {
  Gemm: {
    1: {
      role: 'weight',
      layout: (n) => (n.attributes.transB && 'i' in n.attributes.transB && n.attributes.transB.i ? 'kn' : 'onnx'),
    },
    2: { role: 'bias', layout: () => 'onnx' },
  },
  MatMul: { 1: { role: 'weight', layout: () => 'onnx' } },
  Conv: { 1: { role: 'weight', layout: () => 'hwio' }, 2: { role: 'bias', layout: () => 'onnx' } },
  BatchNormalization: {
    1: { role: 'bn-scale', layout: () => 'onnx' },
    2: { role: 'bn-bias', layout: () => 'onnx' },
    3: { role: 'bn-mean', layout: () => 'onnx' },
    4: { role: 'bn-var', layout: () => 'onnx' },
  },
};

/** ONNX layout -> `layout` and back. */
function fromOnnx(t: tf.Tensor, layout: WeightLayout): tf.Tensor {
  if (layout === 'hwio') return tf.transpose(t, [2, 3, 1, 0]);
  if (layout === 'kn') return tf.transpose(t);
  return t;
}
function toOnnx(t: tf.Tensor, layout: WeightLayout): tf.Tensor {
  if (layout === 'hwio') return tf.transpose(t, [3, 2, 0, 1]);
  if (layout === 'kn') return tf.transpose(t);
  return t;
}
function convert(t: tf.Tensor, from: WeightLayout, to: WeightLayout): tf.Tensor {
  return from === to ? t : fromOnnx(toOnnx(t, from), to);
}

/** Reads and decodes an ONNX file, naming it in any error. */
export function readOnnxFile(path: string): OnnxModel {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new Error(`student model ${path}: cannot read (${(e as Error).message})`);
  }
  return decodeModel(bytes, path);
}

/** Lists every node whose op type or domain is not supported (empty: all are). */
export function unsupportedNodes(model: OnnxModel): string[] {
  return model.graph.nodes
    .filter((n) => (n.domain !== '' && n.domain !== 'ai.onnx') || !(n.opType in OPS))
    .map((n) => `node "${n.name}" (${n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.` : ''}${n.opType})`);
}

export class OnnxStudent implements Student {
  readonly params: NamedVariable[] = [];
  readonly buffers: NamedVariable[] = [];
  readonly inputShape: number[];
  readonly numClasses: number;
  private readonly imported = new Map<string, ImportedParam>();
  /** Host values of the initializers that are not trained. */
  private readonly constants = new Map<string, HostValue>();
  /** Values that depend on a trained variable. */
  private readonly trainedPath = new Set<string>();
  private readonly inputName: string;
  private readonly outputName: string;
  /** How a dataset batch [n, ...datasetShape] becomes the graph input. */
  private readonly feed: 'as-is' | 'hwc-as-nchw' | 'reshape';
  private readonly modelInputShape: number[];

  constructor(
    readonly config: OnnxStudentConfig | TfjsLayersStudentConfig,
    private readonly model: OnnxModel,
    datasetShape: number[],
    numClasses: number,
    private readonly seed: number,
  ) {
    const where = `student model ${config.model}`;
    const bad = unsupportedNodes(model);
    if (bad.length > 0)
      throw new Error(
        `${where}: unsupported ${bad.length === 1 ? 'op' : 'ops'}: ${bad.join(', ')} (supported: ${Object.keys(OPS).join(', ')})`,
      );
    const g = model.graph;
    const initNames = new Set(g.initializers.map((t) => t.name));
    const inputs = g.inputs.filter((i) => !initNames.has(i.name));
    if (inputs.length !== 1)
      throw new Error(
        `${where}: the graph has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); a student takes one`,
      );
    const input = inputs[0]!;
    if (input.elemType !== 'float32')
      throw new Error(`${where}: input "${input.name}" is ${input.elemType}; a student takes float32`);
    this.inputName = input.name;
    const output = g.outputs[0];
    if (!output) throw new Error(`${where}: the graph has no outputs`);
    this.outputName = output.name;
    const dims = (input.shape ?? []).slice(1);
    this.inputShape = datasetShape;
    this.modelInputShape = dims.map((d, i) => (typeof d === 'number' ? d : (datasetShape[i] ?? -1)));
    this.feed = this.chooseFeed(datasetShape, where);
    this.classifyInitializers(where);
    this.traceTrainedPath();
    if (config.reinit) this.reinitialise();
    // One inference pass on a zero sample checks that the graph runs and gives the class count.
    const probe = tf.tidy(() => this.apply(tf.zeros([1, ...datasetShape]), false).shape);
    if (probe.length !== 2)
      throw new Error(
        `${where}: output "${this.outputName}" has shape [${probe}] for one sample; the student's first output must be logits [batch, classes]`,
      );
    if (probe[1] !== numClasses)
      throw new Error(`${where}: output "${this.outputName}" has ${probe[1]} classes, the dataset ${numClasses}`);
    this.numClasses = numClasses;
  }

  /** as-is when the model input matches the dataset's per-sample shape, NHWC data for an NCHW input, else a reshape of equal size. */
  private chooseFeed(datasetShape: number[], where: string): 'as-is' | 'hwc-as-nchw' | 'reshape' {
    const m = this.modelInputShape;
    if (m.join() === datasetShape.join()) return 'as-is';
    if (
      datasetShape.length === 3 &&
      m.length === 3 &&
      m[0] === datasetShape[2] &&
      m[1] === datasetShape[0] &&
      m[2] === datasetShape[1]
    )
      return 'hwc-as-nchw';
    if (product(m) === product(datasetShape) && m.every((d) => d > 0)) return 'reshape';
    throw new Error(
      `${where}: input "${this.inputName}" has per-sample shape [${m}], the dataset [${datasetShape}] (equal, [C, H, W] for [H, W, C] images, or the same number of values)`,
    );
  }

  private classifyInitializers(where: string): void {
    const g = this.model.graph;
    const freeze = new Set(this.config.freeze ?? []);
    const byName = new Map<string, OnnxTensor>(g.initializers.map((t) => [t.name, t]));
    for (const name of freeze)
      if (!byName.has(name)) throw new Error(`${where}: freeze names "${name}", which is not an initializer`);
    const slots = new Map<string, { role: ImportedParam['role']; layout: WeightLayout; node: OnnxNode }>();
    for (const node of g.nodes) {
      node.inputs.forEach((name, i) => {
        const slot = WEIGHT_SLOTS[node.opType]?.[i];
        if (slot && byName.has(name) && !slots.has(name))
          slots.set(name, { role: slot.role, layout: slot.layout(node), node });
      });
    }
    for (const t of g.initializers) {
      const slot = slots.get(t.name);
      const isFloat32 = t.dataType === 'float32' && t.data instanceof Float32Array;
      const size = product(t.dims);
      const trained = isFloat32 && !freeze.has(t.name) && (size > 1 || slot !== undefined);
      if (!trained) {
        this.constants.set(t.name, hostFromTensor(t, where));
        continue;
      }
      const layout = slot?.layout ?? 'onnx';
      const role = slot?.role ?? 'other';
      const values = tf.tidy(() => fromOnnx(tf.tensor(t.data as Float32Array, t.dims), layout));
      const buffer = role === 'bn-mean' || role === 'bn-var';
      const variable = tf.variable(values, !buffer, `${t.name}#onnx${nextVariableId++}`);
      values.dispose();
      const fanIn =
        role === 'weight'
          ? layout === 'hwio'
            ? product(t.dims.slice(1))
            : layout === 'kn'
              ? t.dims[1]!
              : t.dims[0]!
          : 1;
      this.imported.set(t.name, { name: t.name, variable, layout, dims: t.dims, role, fanIn });
      (buffer ? this.buffers : this.params).push({ name: t.name, variable });
    }
  }

  /** Marks every value computed from a trained variable. */
  private traceTrainedPath(): void {
    for (const p of this.params) this.trainedPath.add(p.name);
    for (const node of this.model.graph.nodes) {
      if (node.inputs.some((i) => this.trainedPath.has(i))) for (const o of node.outputs) this.trainedPath.add(o);
    }
  }

  /** Fresh seeded weights: He-uniform weights, zero biases, unit batch-norm scales and variances. */
  private reinitialise(): void {
    const rng = new Rng(this.seed);
    for (const p of this.imported.values()) {
      const shape = p.variable.shape;
      const init = (): tf.Tensor => {
        switch (p.role) {
          case 'weight':
            return tf.tensor(rng.uniformArray(product(shape), Math.sqrt(6 / p.fanIn)), shape);
          case 'bn-scale':
          case 'bn-var':
            return tf.ones(shape);
          case 'bias':
          case 'bn-bias':
          case 'bn-mean':
            return tf.zeros(shape);
          case 'other':
            return p.variable.clone();
        }
      };
      const value = init();
      p.variable.assign(value);
      value.dispose();
    }
  }

  /** Runs the graph; `keep` (when given) receives every node output by value name. */
  private run(x: tf.Tensor, training: boolean, step: number, keep?: (name: string, v: Value) => void): tf.Tensor2D {
    const values = new Map<string, Value>();
    const n = x.shape[0]!;
    if (this.feed === 'as-is') values.set(this.inputName, tensorValue(x));
    else if (this.feed === 'hwc-as-nchw') values.set(this.inputName, tensorValue(x, true));
    else values.set(this.inputName, tensorValue(tf.reshape(x, [n, ...this.modelInputShape])));
    const read = (name: string): Value | undefined => {
      if (name === '') return undefined;
      const v = values.get(name) ?? this.constants.get(name);
      if (v) return v;
      const p = this.imported.get(name);
      if (p) return tensorValue(toOnnx(p.variable, p.layout));
      throw new Error(`student model ${this.config.model}: value "${name}" is read before it is computed`);
    };
    const nodes = this.model.graph.nodes;
    for (let index = 0; index < nodes.length; index++) {
      const node = nodes[index]!;
      const inputs = node.inputs.map(read);
      const ctx: OpContext = {
        training,
        nodeIndex: index,
        dropoutSeed: (i) => (this.seed * 1000003 + step * 7919 + i * 104729 + 1) >>> 0,
        weight: (i, layout) => {
          const p = this.imported.get(node.inputs[i] ?? '');
          return p ? convert(p.variable, p.layout, layout) : undefined;
        },
        needsGrad: (i) => this.trainedPath.has(node.inputs[i] ?? ''),
        updateRunningStats: (mean, variance, momentum) => {
          for (const [i, stat] of [
            [3, mean],
            [4, variance],
          ] as const) {
            const p = this.imported.get(node.inputs[i]!);
            if (p) p.variable.assign(tf.add(tf.mul(p.variable, momentum), tf.mul(stat, 1 - momentum)));
          }
        },
      };
      let outputs: Value[];
      try {
        outputs = OPS[node.opType]!(node, inputs, ctx);
      } catch (e) {
        const message = (e as Error).message;
        throw new Error(
          message.includes(`node "${node.name}"`)
            ? message
            : `student model ${this.config.model}: node "${node.name}" (${node.opType}): ${message}`,
        );
      }
      outputs.forEach((v, i) => {
        const name = node.outputs[i];
        if (!name) return;
        values.set(name, v);
        keep?.(name, v);
      });
    }
    const out = read(this.outputName)!;
    const logits =
      out.kind === 'tensor' ? (out.nhwc ? tf.transpose(out.t, [0, 3, 1, 2]) : out.t) : tf.tensor(out.data, out.dims);
    return logits as tf.Tensor2D;
  }

  apply(x: tf.Tensor, training: boolean, step = 0): tf.Tensor2D {
    return this.run(x, training, step);
  }

  /**
   * Every node output as an activation, named by its ONNX value name and (first output) by its
   * node name: NCHW maps as NHWC [n, h, w, c] (the feature losses' layout), others as they are.
   */
  applyWithActivations(
    x: tf.Tensor,
    training: boolean,
    step = 0,
  ): { logits: tf.Tensor2D; activations: Map<string, tf.Tensor> } {
    const activations = new Map<string, tf.Tensor>();
    const firstOutputOf = new Map(
      this.model.graph.nodes.filter((n) => n.name && n.outputs[0]).map((n) => [n.outputs[0]!, n.name]),
    );
    const logits = this.run(x, training, step, (name, v) => {
      if (v.kind !== 'tensor' || v.t.dtype !== 'float32') return;
      const t = onnxShape(v).length === 4 ? toNhwc(v, name) : v.t;
      activations.set(name, t);
      const node = firstOutputOf.get(name);
      if (node && !activations.has(node)) activations.set(node, t);
    });
    return { logits, activations };
  }

  /** The imported graph with the trained values in its initializers, and `metadata` added. */
  exportModel(metadata: Record<string, string>): OnnxModel {
    const initializers = this.model.graph.initializers.map((t) => {
      const p = this.imported.get(t.name);
      if (!p) return t;
      const data = tf.tidy(() => toOnnx(p.variable, p.layout).dataSync() as Float32Array);
      return { ...t, data: Float32Array.from(data) };
    });
    return {
      ...this.model,
      graph: { ...this.model.graph, initializers },
      metadata: { ...this.model.metadata, ...metadata },
    };
  }
}

/** Builds an imported student from `config.model`. */
export function createOnnxStudent(
  config: OnnxStudentConfig,
  datasetShape: number[],
  numClasses: number,
  seed: number,
): OnnxStudent {
  return new OnnxStudent(config, readOnnxFile(config.model), datasetShape, numClasses, seed);
}
