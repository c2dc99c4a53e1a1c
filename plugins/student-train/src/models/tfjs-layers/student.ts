/**
 * A student read from a TensorFlow.js Layers model (`student: { arch: tfjs-layers, model:
 * model.json }`): the topology is translated into an ONNX graph (convert.ts) and trained as an
 * imported ONNX student (one training path: ../onnx/student.ts). model.onnx is that graph with the
 * trained weights; exportNative writes the user's model.json back (same topology, including a
 * final softmax left out of training) with the trained weights in one new weights file.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { OnnxStudent } from '../onnx/student.js';
import type { TfjsLayersStudentConfig } from '../types.js';
import { layersToOnnx, type Translation } from './convert.js';
import { readLayersModel, type KerasModel } from './read.js';
import { writeLayersModel } from './write.js';

/** Opset of the graph written for a Layers model (student-train's). */
const OPSET = 17;

export class TfjsLayersStudent extends OnnxStudent {
  /** What the translation changed (a final softmax left out), logged before training. */
  readonly notes: string[];

  constructor(
    config: TfjsLayersStudentConfig,
    private readonly keras: KerasModel,
    private readonly translation: Translation,
    datasetShape: number[],
    numClasses: number,
    seed: number,
  ) {
    // `freeze` may name layers (all their weights); constants the translation added never train.
    const freeze = (config.freeze ?? []).flatMap((name) => translation.layerWeights.get(name) ?? [name]);
    super(
      { ...config, freeze: [...new Set([...translation.frozen, ...freeze])] },
      translation.model,
      datasetShape,
      numClasses,
      seed,
    );
    this.notes = translation.notes;
  }

  /** Writes model.json and model.weights.bin into `dir`: the given topology with the trained weights. */
  exportNative(dir: string): string[] {
    const trained = new Map(this.exportModel({}).graph.initializers.map((t) => [t.name, t.data as Float32Array]));
    const bindings = new Map(this.translation.bindings.map((b) => [b.manifestName, b]));
    const specs: tf.io.WeightsManifestEntry[] = [];
    const parts: Uint8Array[] = [];
    for (const w of this.keras.weights) {
      const binding = bindings.get(w.name);
      // Weights of no layer (e.g. optimizer state saved with the model) go back as they were.
      const data = binding ? binding.toKeras(trained.get(binding.initializer)!) : w.data;
      specs.push({ name: w.name, shape: w.shape, dtype: w.dtype });
      parts.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
    const bytes = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let offset = 0;
    for (const p of parts) {
      bytes.set(p, offset);
      offset += p.length;
    }
    return writeLayersModel(dir, this.keras.json, specs, bytes);
  }
}

/** Builds a tfjs-layers student from `config.model` (model.json or its folder). */
export function createTfjsLayersStudent(
  config: TfjsLayersStudentConfig,
  datasetShape: number[],
  numClasses: number,
  seed: number,
): TfjsLayersStudent {
  const keras = readLayersModel(config.model);
  const translation = layersToOnnx(keras, datasetShape, OPSET);
  return new TfjsLayersStudent({ ...config, model: keras.file }, keras, translation, datasetShape, numClasses, seed);
}
