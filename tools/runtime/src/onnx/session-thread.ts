/**
 * An onnxruntime-node InferenceSession that runs in a worker thread.
 *
 * Why: onnxruntime-node's `session.run` is asynchronous in name only: it computes synchronously on
 * the JS thread (after a setImmediate). Reading shards, converting inputs, top-k and Arrow writing
 * then wait for inference and inference waits for them. With the session in a worker, the stage's
 * JS thread prepares batch i+1 and post-processes batch i-1 while batch i computes (the worker
 * plus onnxruntime's intra-op pool use `threads` cores; the JS thread one more).
 *
 * Inputs and outputs cross the thread boundary by transfer (no copy): `run` hands the input
 * buffers to the worker and gets them back, detached no more, with the result.
 */
import { Worker } from 'node:worker_threads';
import type { PixelInputTransform } from './input-transform.js';
import type { ProviderOutcome } from './execution-provider.js';

/** Whether the pixel transform moved into the model: the uint8 input that replaced the float one, or why not. */
export type InputTransformOutcome = { applied: true; input: string } | { applied: false; reason: string };

/** Element types accepted as inputs (those teacher and eval stages feed). */
export type ThreadTensorType = 'float32' | 'float64' | 'uint8' | 'int8' | 'int32' | 'int64';
type TypedData = Float32Array | Float64Array | Uint8Array | Int8Array | Int32Array | BigInt64Array;

/** A tensor as it crosses the thread boundary. */
export interface ThreadTensor {
  type: ThreadTensorType;
  data: TypedData;
  dims: number[];
}

/** Input or output metadata, as onnxruntime-node reports it (`shape` holds numbers or symbolic names). */
export interface ThreadValueMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: (number | string)[];
}

export interface ThreadSessionOptions {
  /** onnxruntime intra-op threads (the worker thread is one of them). */
  threads: number;
  /**
   * GPUs the runner assigned (physical indices). When non-empty the CUDA execution provider is
   * asked for on the first of them (its ordinal under CUDA_VISIBLE_DEVICES; execution-provider.ts),
   * falling back to CPU with a warning that names the missing library.
   */
  gpus?: readonly number[];
  /** Receives warnings such as a CUDA provider that could not be loaded. */
  warn?: (message: string) => void;
  /**
   * Pixel preprocessing to move into the model (onnx/input-transform.ts), tried in the worker
   * before the session is created; `inputTransform` on the session says whether it applied.
   */
  pixelTransform?: PixelInputTransform;
}

/** What the worker answers (see session-thread-worker.ts). */
export type WorkerReply =
  | {
      kind: 'ready';
      inputNames: string[];
      outputNames: string[];
      inputMetadata: ThreadValueMetadata[];
      outputMetadata: ThreadValueMetadata[];
      warnings: string[];
      inputTransform: InputTransformOutcome;
      provider: ProviderOutcome;
    }
  | { kind: 'result'; id: number; outputs: Record<string, ThreadTensor>; inputs: Record<string, ThreadTensor> }
  | { kind: 'error'; id: number; message: string };

/** What the worker is asked. */
export type WorkerRequest =
  | { kind: 'open'; modelPath: string; threads: number; gpus: number[]; pixelTransform?: PixelInputTransform }
  | { kind: 'run'; id: number; feeds: Record<string, ThreadTensor>; fetches: string[] };

/** One run's answer: the outputs, and the input tensors handed back (same buffers, usable again). */
export interface ThreadRunResult {
  outputs: Record<string, ThreadTensor>;
  inputs: Record<string, ThreadTensor>;
}

const transferables = (tensors: Record<string, ThreadTensor>): ArrayBuffer[] => {
  const seen = new Set<ArrayBuffer>();
  for (const t of Object.values(tensors)) if (t.data.buffer instanceof ArrayBuffer) seen.add(t.data.buffer);
  return [...seen];
};

export class ThreadedSession {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (r: ThreadRunResult) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly inputNames: string[],
    readonly outputNames: string[],
    readonly inputMetadata: ThreadValueMetadata[],
    readonly outputMetadata: ThreadValueMetadata[],
    readonly inputTransform: InputTransformOutcome,
    /** The execution provider the session runs on (CUDA, or CPU and why when CUDA was asked for). */
    readonly executionProvider: ProviderOutcome,
  ) {
    worker.on('message', (reply: WorkerReply) => {
      if (reply.kind === 'ready') return;
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (reply.kind === 'result') p.resolve({ outputs: reply.outputs, inputs: reply.inputs });
      else p.reject(new Error(reply.message));
    });
    const fail = (error: Error) => {
      this.failure ??= error;
      for (const p of this.pending.values()) p.reject(error);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`onnxruntime worker thread exited (code ${code})`)));
  }

  /** Loads the model in a new worker thread; a load error names the file. */
  static async open(modelPath: string, options: ThreadSessionOptions): Promise<ThreadedSession> {
    const worker = new Worker(new URL('./session-thread-worker.js', import.meta.url));
    const request: WorkerRequest = {
      kind: 'open',
      modelPath,
      threads: Math.max(1, options.threads),
      gpus: [...(options.gpus ?? [])],
      pixelTransform: options.pixelTransform,
    };
    const ready = await new Promise<Extract<WorkerReply, { kind: 'ready' }>>((resolve, reject) => {
      const onMessage = (reply: WorkerReply) => {
        worker.off('error', onError);
        if (reply.kind === 'ready') resolve(reply);
        else reject(new Error(reply.kind === 'error' ? reply.message : 'unexpected reply from the onnxruntime worker'));
      };
      const onError = (error: Error) => {
        worker.off('message', onMessage);
        reject(error);
      };
      worker.once('message', onMessage);
      worker.once('error', onError);
      worker.postMessage(request);
    }).catch(async (error: Error) => {
      await worker.terminate();
      throw error;
    });
    for (const w of ready.warnings) options.warn?.(w);
    return new ThreadedSession(
      worker,
      ready.inputNames,
      ready.outputNames,
      ready.inputMetadata,
      ready.outputMetadata,
      ready.inputTransform,
      ready.provider,
    );
  }

  /**
   * Runs the model. The feeds' buffers are transferred to the worker (unusable until the result
   * returns them in `inputs`). Several runs may be queued; they execute in order.
   */
  run(feeds: Record<string, ThreadTensor>, fetches: string[]): Promise<ThreadRunResult> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const request: WorkerRequest = { kind: 'run', id, feeds, fetches };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage(request, transferables(feeds));
    });
  }

  /** Ends the worker (and the session in it). */
  async release(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}
