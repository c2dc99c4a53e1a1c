/**
 * What every student architecture is: its configuration types and the `Student` interface the
 * training loop, the losses and the ONNX export read. Architectures live beside this file
 * (mlp.ts, cnn.ts, kc.ts); student.ts builds one from its configuration.
 *
 * Inputs are float32 [n, ...inputShape] in the dataset's layout (HWC for images); logits come out
 * in GLOBAL class order [n, numClasses].
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { GraphBuilder, OnnxModel } from '@distillery/runtime/onnx';
import type { NamedVariable } from '@distillery/runtime/optim';

export interface MlpConfig {
  arch: 'mlp';
  /** Hidden layer widths (relu), e.g. [1024, 1024]. */
  hidden: number[];
}

export interface CnnConfig {
  arch: 'cnn';
  /** Output channels of each conv block (conv kxk same-padding -> [batch norm] -> relu -> 2x2 max pool). */
  channels: number[];
  kernel: number;
  batchNorm: boolean;
  /** Dense hidden widths after the conv blocks. */
  hidden: number[];
  /** 'same' (default; odd kernels) or 'valid' convolutions. */
  padding?: 'same' | 'valid';
  /** Dropout rate on the input of each dense head layer while training (default 0). */
  dropout?: number;
}

export interface KcConfig {
  arch: 'kc';
  /** Hidden widths of the shared trunk before the SC head (empty: the head reads the input). */
  hidden: number[];
  /** Width s1 of the shared FC layer. */
  sharedWidth: number;
  /** Width s2 of each vertical's hidden block. */
  verticalWidth: number;
  /** Global class ids of each vertical; together they must cover every class exactly once. */
  verticals: number[][];
  /** Self-paced learning: y_v = gamma_v * x_v / ||x_v||_2 with gamma_v learnable. */
  selfPaced: boolean;
}

/** A student imported from an ONNX file (models/onnx/student.ts). */
export interface OnnxStudentConfig {
  arch: 'onnx';
  /** Path of the .onnx file (PyTorch's torch.onnx.export, or any graph of the supported ops). */
  model: string;
  /** Start from fresh seeded weights instead of the file's (default: the file's, i.e. fine-tuning). */
  reinit: boolean;
  /** Float initializers kept as they are (not trained). */
  freeze?: string[];
}

/** A student read from a TensorFlow.js Layers model (models/tfjs-layers/), trained as an imported ONNX graph. */
export interface TfjsLayersStudentConfig {
  arch: 'tfjs-layers';
  /** model.json ("format": "layers-model"), or the folder holding it. */
  model: string;
  /** Start from fresh seeded weights instead of the file's (default: the file's, i.e. fine-tuning). */
  reinit: boolean;
  /** Weights (`<layer>/<weight>`, e.g. conv2d/kernel) or whole layers (their name) kept as they are. */
  freeze?: string[];
}

export type StudentConfig = MlpConfig | CnnConfig | KcConfig | OnnxStudentConfig | TfjsLayersStudentConfig;

/** A model: trainable params, non-trainable buffers (batch-norm running stats), forward, ONNX. */
export interface Student {
  readonly config: StudentConfig;
  readonly inputShape: number[];
  readonly numClasses: number;
  readonly params: NamedVariable[];
  readonly buffers: NamedVariable[];
  /**
   * Logits [n, numClasses]. `training` selects batch statistics (and updates running stats) and
   * dropout; `step` seeds the step's dropout masks.
   */
  apply(x: tf.Tensor, training: boolean, step?: number): tf.Tensor2D;
  /**
   * Logits at the given distinct global class ids only, [n, columns.length] in that order; equal
   * to apply(x)[:, columns] (self-paced norms still over each whole vertical) without computing
   * the other classes' logits. Absent where the architecture has no cheaper path (cnn).
   */
  applyColumns?(x: tf.Tensor, training: boolean, columns: Int32Array): tf.Tensor2D;
  /**
   * Appends the inference graph reading `input` (float32 [n, ...inputShape]); returns the logits
   * name. Built-in architectures; an imported student has exportModel instead.
   */
  toOnnx?(builder: GraphBuilder, input: string): string;
  /** The whole trained model (imported students: their own graph with the trained initializers), `metadata` added. */
  exportModel?(metadata: Record<string, string>): OnnxModel;
  /**
   * A student imported from another format (tfjs-layers) writes itself back in that format into
   * `dir` with the trained weights; returns the file names written.
   */
  exportNative?(dir: string): string[];
  /** What importing the student changed (e.g. a final softmax left out), logged before training. */
  readonly notes?: string[];
  /**
   * The same forward pass as apply(), also returning named intermediate activations (for feature
   * distillation): `conv<i>` = conv block i's output after relu and pooling, [n, h, w, c] (NHWC);
   * `fc<i>` = dense layer i's output (after relu; the last one is the logits), [n, width].
   * Absent where the architecture exposes none (kc).
   */
  applyWithActivations?(
    x: tf.Tensor,
    training: boolean,
    step?: number,
  ): { logits: tf.Tensor2D; activations: Map<string, tf.Tensor> };
  /**
   * ONNX value names and shapes (after the batch dim, in the ONNX graph's layout: NCHW for conv
   * blocks) of the activations applyWithActivations returns, as toOnnx writes them.
   */
  onnxActivations?(): Map<string, { value: string; shape: number[] }>;
}
