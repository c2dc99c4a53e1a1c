/**
 * Writing a Layers model: model.json plus one weights file beside it, both atomically (weights
 * first, so a model.json never points at a missing or older file). Used to write a trained
 * tfjs-layers student back, and as a tfjs IOHandler (`model.save(layersSaveHandler(dir))`) by the
 * tests and pipelines/scripts/byo_student_tfjs.mjs.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { writeFileAtomicSync } from '@distillery/core/plugin';

/** The weights file written beside model.json. */
export const LAYERS_WEIGHTS_FILE = 'model.weights.bin';

/** Writes `dir`/model.json (`json` with a weightsManifest listing `specs` in one file) and its weights. */
export function writeLayersModel(
  dir: string,
  json: Record<string, unknown>,
  specs: tf.io.WeightsManifestEntry[],
  weightData: Uint8Array,
): string[] {
  mkdirSync(dir, { recursive: true });
  writeFileAtomicSync(join(dir, LAYERS_WEIGHTS_FILE), weightData);
  const manifest: tf.io.WeightsManifestConfig = [{ paths: [LAYERS_WEIGHTS_FILE], weights: specs }];
  writeFileAtomicSync(join(dir, 'model.json'), JSON.stringify({ ...json, weightsManifest: manifest }));
  return ['model.json', LAYERS_WEIGHTS_FILE];
}

/** A tfjs save handler writing model.json and model.weights.bin into `dir`. */
export function layersSaveHandler(dir: string): tf.io.IOHandler {
  return tf.io.withSaveHandler(async (artifacts) => {
    const data = artifacts.weightData
      ? new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData))
      : new Uint8Array(0);
    writeLayersModel(
      dir,
      {
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? null,
        modelTopology: artifacts.modelTopology,
        ...(artifacts.trainingConfig ? { trainingConfig: artifacts.trainingConfig } : {}),
      },
      artifacts.weightSpecs ?? [],
      data,
    );
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: data.length } };
  });
}
