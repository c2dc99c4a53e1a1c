/**
 * Reading a TensorFlow.js Layers model (model.json with "format": "layers-model", as tfjs'
 * model.save or tensorflowjs_converter write it): its topology as a list of layers in an order
 * where every layer comes after the layers it reads, and its weights decoded from the .bin files
 * the weightsManifest lists (quantized weights are decoded to float32 by tfjs-core's decoder).
 *
 * Supported topologies: Sequential, and functional models (class Model / Functional) whose layers
 * are each called once and have one output. Keras 3's model.json (inbound nodes as args/kwargs)
 * is not read.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

/** A layer of the topology. */
export interface KerasLayer {
  name: string;
  className: string;
  /** The layer's Keras config (snake_case keys, as model.json stores them). */
  config: Record<string, unknown>;
  /** The layers whose outputs this layer reads, in order (none for an InputLayer). */
  inbound: string[];
}

/** A decoded weight. */
export interface KerasWeight {
  name: string;
  dtype: 'float32' | 'int32';
  shape: number[];
  data: Float32Array | Int32Array;
}

/** A Layers model as read from its model.json. */
export interface KerasModel {
  /** Path of model.json (every error names it). */
  file: string;
  /** model.json as parsed (written back with a new weightsManifest). */
  json: Record<string, unknown>;
  /** Every layer, each after the layers it reads. */
  layers: KerasLayer[];
  /** The InputLayer's name (a synthetic `<first layer>_input` for a Sequential without one). */
  input: string;
  /** Per-sample input shape (null: any size). */
  inputShape: (number | null)[];
  output: string;
  /** The manifest's weights in manifest order. */
  weights: KerasWeight[];
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** model.json's path: `path` itself, or `path`/model.json when `path` is a directory. */
export function modelJsonPath(path: string): string {
  return existsSync(path) && statSync(path).isDirectory() ? join(path, 'model.json') : path;
}

/** Reads model.json and its weight files. */
export function readLayersModel(path: string): KerasModel {
  const file = modelJsonPath(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`student model ${file}: cannot read (${(e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`student model ${file}: not JSON (${(e as Error).message})`);
  }
  if (!isObject(json)) throw new Error(`student model ${file}: not a JSON object`);
  if (json.format !== undefined && json.format !== 'layers-model')
    throw new Error(
      `student model ${file}: format "${String(json.format)}"; arch tfjs-layers reads "layers-model" files (a graph model can be converted to ONNX with tf2onnx and trained as arch onnx)`,
    );
  let topology = json.modelTopology;
  if (isObject(topology) && isObject(topology.model_config)) topology = topology.model_config;
  if (!isObject(topology)) throw new Error(`student model ${file}: no modelTopology`);
  const { layers, input, inputShape, output } = parseTopology(topology, file);
  return { file, json, layers, input, inputShape, output, weights: readWeights(json, file) };
}

/** A Keras batch shape ([null, ...]) from a layer config, per sample. */
function batchShapeOf(config: Json): (number | null)[] | undefined {
  const shape = config.batch_input_shape ?? config.batch_shape;
  if (!Array.isArray(shape)) return undefined;
  return shape.slice(1).map((d) => (typeof d === 'number' ? d : null));
}

function parseTopology(
  topology: Json,
  file: string,
): { layers: KerasLayer[]; input: string; inputShape: (number | null)[]; output: string } {
  const className = topology.class_name;
  const config = topology.config;
  const where = `student model ${file}`;
  // Old Keras Sequential configs are the bare list of layers.
  const layerList = Array.isArray(config) ? config : isObject(config) ? config.layers : undefined;
  if (!Array.isArray(layerList) || layerList.length === 0)
    throw new Error(`${where}: modelTopology (${String(className)}) has no layers`);
  const raw = layerList.map((l, i) => {
    if (!isObject(l) || typeof l.class_name !== 'string' || !isObject(l.config))
      throw new Error(`${where}: layer ${i} has no class_name and config`);
    const name = typeof l.name === 'string' ? l.name : l.config.name;
    if (typeof name !== 'string') throw new Error(`${where}: layer ${i} (${l.class_name}) has no name`);
    return { name, className: l.class_name, config: l.config, inboundNodes: l.inbound_nodes };
  });
  if (className === 'Sequential') {
    const layers: KerasLayer[] = [];
    let previous: string;
    let input: string;
    let inputShape: (number | null)[] | undefined;
    if (raw[0]!.className === 'InputLayer') {
      input = raw[0]!.name;
      inputShape = batchShapeOf(raw[0]!.config);
      layers.push({ name: input, className: 'InputLayer', config: raw[0]!.config, inbound: [] });
    } else {
      input = `${raw[0]!.name}_input`;
      inputShape = batchShapeOf(raw[0]!.config);
      layers.push({ name: input, className: 'InputLayer', config: {}, inbound: [] });
    }
    if (!inputShape)
      throw new Error(
        `${where}: the first layer "${raw[0]!.name}" has no batch_input_shape (the model was never built)`,
      );
    previous = input;
    for (const l of raw) {
      if (l.name === input) continue;
      layers.push({ name: l.name, className: l.className, config: l.config, inbound: [previous] });
      previous = l.name;
    }
    return { layers, input, inputShape, output: previous };
  }
  if (className !== 'Model' && className !== 'Functional')
    throw new Error(`${where}: modelTopology class ${String(className)} (Sequential, Model or Functional are read)`);
  const cfg = config as Json;
  const ends = (key: string): string[] => {
    const list = cfg[key];
    if (!Array.isArray(list)) throw new Error(`${where}: the model config has no ${key}`);
    return list.map((ref) => (Array.isArray(ref) ? String(ref[0]) : String(ref)));
  };
  const inputs = ends('input_layers');
  const outputs = ends('output_layers');
  if (inputs.length !== 1)
    throw new Error(`${where}: the model has ${inputs.length} inputs (${inputs.join(', ')}); a student takes one`);
  if (outputs.length !== 1)
    throw new Error(
      `${where}: the model has ${outputs.length} outputs (${outputs.join(', ')}); a student has one (the logits)`,
    );
  const byName = new Map<string, KerasLayer>();
  for (const l of raw) {
    const nodes = Array.isArray(l.inboundNodes) ? l.inboundNodes : [];
    if (nodes.length > 1)
      throw new Error(
        `${where}: layer "${l.name}" (${l.className}) is called ${nodes.length} times; shared layers are not supported`,
      );
    const node = nodes[0];
    if (node !== undefined && !Array.isArray(node))
      throw new Error(
        `${where}: layer "${l.name}" (${l.className}) has inbound nodes in a format not read here (Keras 3 args/kwargs); save the model with tfjs or Keras 2`,
      );
    const inbound = (node ?? []).map((ref: unknown) => {
      if (!Array.isArray(ref) || typeof ref[0] !== 'string')
        throw new Error(
          `${where}: layer "${l.name}" (${l.className}): an inbound reference is not [layer, node, tensor, kwargs]`,
        );
      if (ref[2] !== 0 && ref[2] !== undefined)
        throw new Error(
          `${where}: layer "${l.name}" (${l.className}) reads output ${String(ref[2])} of "${ref[0]}"; layers with several outputs are not supported`,
        );
      return ref[0];
    });
    byName.set(l.name, { name: l.name, className: l.className, config: l.config, inbound });
  }
  // Topological order (a depth-first walk from the output), so the graph builder sees producers first.
  const ordered: KerasLayer[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, from: string): void => {
    const layer = byName.get(name);
    if (!layer) throw new Error(`${where}: layer "${from}" reads "${name}", which is not a layer of the model`);
    if (state.get(name) === 'done') return;
    if (state.get(name) === 'visiting') throw new Error(`${where}: layer "${name}" is part of a cycle`);
    state.set(name, 'visiting');
    for (const i of layer.inbound) visit(i, name);
    state.set(name, 'done');
    ordered.push(layer);
  };
  visit(outputs[0]!, 'output_layers');
  const input = inputs[0]!;
  const inputLayer = byName.get(input);
  if (inputLayer?.className !== 'InputLayer') throw new Error(`${where}: input "${input}" is not an InputLayer`);
  if (state.get(input) !== 'done')
    throw new Error(`${where}: the output "${outputs[0]}" does not depend on the input "${input}"`);
  const inputShape = batchShapeOf(inputLayer.config);
  if (!inputShape) throw new Error(`${where}: InputLayer "${input}" has no batch_input_shape`);
  return { layers: ordered, input, inputShape, output: outputs[0]! };
}

const BYTES: Record<string, number> = { float32: 4, int32: 4, uint8: 1, uint16: 2, float16: 2 };

/** Decodes every weight group's files (concatenated in order) with tfjs-core's decoder. */
function readWeights(json: Json, file: string): KerasWeight[] {
  const manifest = json.weightsManifest ?? [];
  if (!Array.isArray(manifest)) throw new Error(`student model ${file}: weightsManifest is not a list`);
  const out: KerasWeight[] = [];
  manifest.forEach((group: unknown, g) => {
    if (!isObject(group) || !Array.isArray(group.paths) || !Array.isArray(group.weights))
      throw new Error(`student model ${file}: weightsManifest[${g}] needs paths and weights`);
    const specs = group.weights as tf.io.WeightsManifestEntry[];
    const buffers = (group.paths as string[]).map((p) => {
      const path = join(dirname(file), p);
      try {
        const bytes = readFileSync(path);
        return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      } catch (e) {
        throw new Error(`student model ${file}: weights file ${path}: cannot read (${(e as Error).message})`);
      }
    });
    let expected = 0;
    for (const s of specs) {
      const bytes = BYTES[s.quantization?.dtype ?? s.dtype];
      if (!bytes || (s.dtype !== 'float32' && s.dtype !== 'int32'))
        throw new Error(`student model ${file}: weight "${s.name}" has dtype ${s.dtype}; float32 and int32 are read`);
      expected += bytes * s.shape.reduce((a, b) => a * b, 1);
    }
    const actual = buffers.reduce((a, b) => a + b.byteLength, 0);
    if (actual !== expected)
      throw new Error(
        `student model ${file}: weightsManifest[${g}] describes ${expected} bytes, its files (${(group.paths as string[]).join(', ')}) hold ${actual}`,
      );
    const decoded = tf.io.decodeWeights(buffers, specs);
    for (const s of specs) {
      const t = decoded[s.name]!;
      const data = t.dtype === 'int32' ? Int32Array.from(t.dataSync()) : Float32Array.from(t.dataSync());
      out.push({ name: s.name, dtype: t.dtype === 'int32' ? 'int32' : 'float32', shape: [...s.shape], data });
      t.dispose();
    }
  });
  return out;
}
