// Builds a Keras-style CNN with batch norm in TensorFlow.js Layers and saves it as a Layers model
// (model.json + model.weights.bin): the student that pipelines/byo-student.yaml pretrains and then
// fine-tunes with `student: { arch: tfjs-layers }`.
//
// Run by the `export-tfjs-student` exec stage (parameters in the JSON file $DISTILL_PARAMS_FILE,
// output in $DISTILL_OUT). The model, as a Keras user would write it (the final softmax included):
// Conv2D 8 3x3 same (no bias) -> BatchNormalization -> ReLU -> MaxPooling2D, Conv2D 16 3x3 same
// (no bias) -> BatchNormalization -> ReLU -> MaxPooling2D, Flatten -> Dropout 0.25 -> Dense 10
// softmax, on [28, 28, 1] inputs. Every initialiser is seeded. It is saved untrained: tfjs-layers'
// own training (model.fit) needs Conv2DBackpropFilter, which the wasm backend lacks, and on the cpu
// backend 150 steps of 64 had not finished after 10 minutes (2026-12-03, a shared, loaded machine),
// so the pipeline pretrains it in student-train (stage tfjs-pretrain).
import { readFileSync } from 'node:fs';
import { selectBackend } from '@distillery/runtime/tfjs/backend';

const params = JSON.parse(readFileSync(process.env.DISTILL_PARAMS_FILE, 'utf8'));
await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
const tfl = await import('@tensorflow/tfjs-layers');
const { layersSaveHandler } = await import('@distillery/plugin-student-train');

const init = (k) => tfl.initializers.heNormal({ seed: params.seed * 100 + k });
const L = tfl.layers;
const conv = (filters, k, extra = {}) =>
  L.conv2d({ filters, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: init(k), ...extra });
const model = tfl.sequential({
  layers: [
    conv(8, 1, { inputShape: [28, 28, 1], name: 'conv1' }),
    L.batchNormalization({ name: 'bn1' }),
    L.reLU({ name: 'relu1' }),
    L.maxPooling2d({ poolSize: 2, name: 'pool1' }),
    conv(16, 2, { name: 'conv2' }),
    L.batchNormalization({ name: 'bn2' }),
    L.reLU({ name: 'relu2' }),
    L.maxPooling2d({ poolSize: 2, name: 'pool2' }),
    L.flatten({ name: 'flatten' }),
    L.dropout({ rate: 0.25, seed: params.seed, name: 'dropout' }),
    L.dense({ units: 10, activation: 'softmax', kernelInitializer: init(3), name: 'classifier' }),
  ],
});
await model.save(layersSaveHandler(process.env.DISTILL_OUT));
console.log(
  `tfjs-layers CNN: ${model.countParams()} parameters, layers ${model.layers.map((l) => l.getClassName()).join(', ')}`,
);
