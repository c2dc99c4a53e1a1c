/**
 * onnxruntime-node sessions for the exported models: the teacher denoiser (multi-step sampling,
 * teacher scores during distillation) and generators (one step). Loaded dynamically by callers.
 */
import * as ort from 'onnxruntime-node';

export interface SessionOptions {
  threads?: number;
}

async function open(path: string, options: SessionOptions): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(path, { intraOpNumThreads: options.threads ?? 1, interOpNumThreads: 1 });
  } catch (error) {
    throw new Error(`ONNX model ${path}: cannot load (${(error as Error).message})`);
  }
}

function classTensor(classes: ArrayLike<number>): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(Array.from(classes, (c) => BigInt(c))), [classes.length]);
}

/** D(x; sigma, c) from a denoiser ONNX (inputs x, sigma, class; output denoised). */
export class DenoiserSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly path: string,
    readonly dim: number,
  ) {}

  static async open(path: string, dim: number, options: SessionOptions = {}): Promise<DenoiserSession> {
    return new DenoiserSession(await open(path, options), path, dim);
  }

  /** `sigma`: one value for all rows, or one per row. */
  async denoise(x: Float32Array, sigma: number | ArrayLike<number>, classes: ArrayLike<number>): Promise<Float32Array> {
    const n = classes.length;
    if (x.length !== n * this.dim)
      throw new Error(`${this.path}: ${x.length} values for ${n} rows of width ${this.dim}`);
    const s = typeof sigma === 'number' ? new Float32Array(n).fill(sigma) : Float32Array.from(sigma);
    const out = await this.session.run({
      x: new ort.Tensor('float32', x, [n, this.dim]),
      sigma: new ort.Tensor('float32', s, [n, 1]),
      class: classTensor(classes),
    });
    return out.denoised!.data as Float32Array;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** G(z, c) from a generator ONNX (inputs z, class; output sample). */
export class GeneratorSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly path: string,
    readonly dim: number,
  ) {}

  static async open(path: string, dim: number, options: SessionOptions = {}): Promise<GeneratorSession> {
    return new GeneratorSession(await open(path, options), path, dim);
  }

  async generate(z: Float32Array, classes: ArrayLike<number>): Promise<Float32Array> {
    const n = classes.length;
    const out = await this.session.run({ z: new ort.Tensor('float32', z, [n, this.dim]), class: classTensor(classes) });
    return out.sample!.data as Float32Array;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** Penultimate features from a classifier ONNX (input "input", output "features"). */
export class FeatureSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly path: string,
  ) {}

  static async open(path: string, options: SessionOptions = {}): Promise<FeatureSession> {
    return new FeatureSession(await open(path, options), path);
  }

  async run(
    x: Float32Array,
    n: number,
    dim: number,
  ): Promise<{ features: Float32Array; logits: Float32Array; featureDim: number }> {
    const out = await this.session.run({ input: new ort.Tensor('float32', x, [n, dim]) });
    const f = out.features;
    if (!f) throw new Error(`${this.path}: no "features" output`);
    return { features: f.data as Float32Array, logits: out.logits!.data as Float32Array, featureDim: f.dims[1]! };
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
