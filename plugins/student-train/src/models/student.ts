/**
 * Student architectures on tfjs-core: configurable MLP (mlp.ts), small CNN (cnn.ts: conv, batch
 * norm, relu, pooling, dropout) and the Knowledge Concentration head (kc.ts). Each model knows how
 * to write itself as ONNX. `onnx` imports a user's ONNX graph (onnx/student.ts), `tfjs-layers` a
 * TensorFlow.js Layers model translated into such a graph (tfjs-layers/student.ts). The shared types
 * are in types.ts.
 */
import { Cnn } from './cnn.js';
import { KcStudent } from './kc.js';
import { Mlp } from './mlp.js';
import { createOnnxStudent } from './onnx/student.js';
import { createTfjsLayersStudent } from './tfjs-layers/student.js';
import type { Student, StudentConfig } from './types.js';

export type {
  CnnConfig,
  KcConfig,
  MlpConfig,
  OnnxStudentConfig,
  Student,
  StudentConfig,
  TfjsLayersStudentConfig,
} from './types.js';

/** Builds a student with seeded initialisation. */
export function createStudent(config: StudentConfig, inputShape: number[], numClasses: number, seed: number): Student {
  if (!Number.isInteger(numClasses) || numClasses < 1)
    throw new Error(`student: numClasses must be a positive integer, got ${numClasses}`);
  switch (config.arch) {
    case 'mlp':
      return new Mlp(config, inputShape, numClasses, seed);
    case 'cnn':
      return new Cnn(config, inputShape, numClasses, seed);
    case 'kc':
      return new KcStudent(config, inputShape, numClasses, seed);
    case 'onnx':
      return createOnnxStudent(config, inputShape, numClasses, seed);
    case 'tfjs-layers':
      return createTfjsLayersStudent(config, inputShape, numClasses, seed);
  }
}

/** Number of trainable scalars. */
export function parameterCount(student: Student): number {
  return student.params.reduce((a, p) => a + p.variable.size, 0);
}
