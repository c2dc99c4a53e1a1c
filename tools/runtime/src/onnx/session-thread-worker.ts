/**
 * Worker-thread side of ThreadedSession (session-thread.ts): owns one onnxruntime-node session,
 * answers `open` once and then `run` requests in order, transferring outputs and the inputs back.
 */
import { parentPort } from 'node:worker_threads';
import type * as Ort from 'onnxruntime-node';
import { readFile, stat } from 'node:fs/promises';
import { PIXEL_TRANSFORM_MAX_MODEL_BYTES, prependPixelTransform, type PixelInputTransform } from './input-transform.js';
import {
  diagnoseCudaProvider,
  onnxruntimeNodeInstall,
  openWithProvider,
  requestedProvider,
  type ProviderOutcome,
} from './execution-provider.js';
import type {
  InputTransformOutcome,
  ThreadTensor,
  ThreadValueMetadata,
  WorkerReply,
  WorkerRequest,
} from './session-thread.js';

const port = parentPort!;
let ort: typeof Ort | undefined;
let session: Ort.InferenceSession | undefined;

const firstLine = (error: unknown) => (error instanceof Error ? error.message : String(error)).split('\n')[0]!;

function metadata(list: readonly Ort.InferenceSession.ValueMetadata[]): ThreadValueMetadata[] {
  return list.map((m) =>
    m.isTensor
      ? { name: m.name, isTensor: true, type: m.type, shape: [...m.shape] }
      : { name: m.name, isTensor: false },
  );
}

// Two overloads of create (a path, or bytes); TypeScript does not pick one for the union.
const createSession = (model: string | Uint8Array, options: Ort.InferenceSession.SessionOptions) =>
  typeof model === 'string'
    ? ort!.InferenceSession.create(model, options)
    : ort!.InferenceSession.create(model, options);

async function open(
  modelPath: string,
  threads: number,
  gpus: number[],
  pixelTransform: PixelInputTransform | undefined,
): Promise<WorkerReply> {
  ort ??= await import('onnxruntime-node');
  // The model as onnxruntime gets it: the file path, or the rewritten bytes.
  let model: string | Uint8Array = modelPath;
  let inputTransform: InputTransformOutcome = { applied: false, reason: 'not requested' };
  if (pixelTransform) {
    try {
      const size = (await stat(modelPath)).size;
      if (size > PIXEL_TRANSFORM_MAX_MODEL_BYTES)
        throw new Error(
          `model larger than ${PIXEL_TRANSFORM_MAX_MODEL_BYTES >> 20} MiB (${(size / 2 ** 20).toFixed(0)} MiB)`,
        );
      const result = prependPixelTransform(await readFile(modelPath), pixelTransform);
      if (result.applied) {
        model = result.bytes;
        inputTransform = { applied: true, input: result.input };
      } else inputTransform = result;
    } catch (error) {
      // Too large, unreadable or not protobuf (onnxruntime's own load below reports the latter two).
      inputTransform = { applied: false, reason: firstLine(error) };
    }
  }
  const base: Ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  };
  const request = requestedProvider(gpus, process.env.CUDA_VISIBLE_DEVICES);
  const warnings = new Set<string>();
  let provider: ProviderOutcome = { name: 'cpu' };
  const openModel = async (m: string | Uint8Array) => {
    const opened = await openWithProvider(
      request,
      (executionProviders) => createSession(m, { ...base, executionProviders }),
      () => diagnoseCudaProvider(onnxruntimeNodeInstall()),
    );
    if (opened.warning) warnings.add(opened.warning);
    provider = opened.provider;
    return opened.session;
  };
  if (typeof model !== 'string') {
    try {
      session = await openModel(model);
    } catch (error) {
      // The rewritten model does not load: fall back to the model as it is (its own errors below).
      inputTransform = { applied: false, reason: `the rewritten model did not load (${firstLine(error)})` };
      model = modelPath;
    }
  }
  if (!session) {
    try {
      session = await openModel(model);
    } catch (error) {
      return { kind: 'error', id: -1, message: `ONNX model ${modelPath}: cannot load (${firstLine(error)})` };
    }
  }
  return {
    kind: 'ready',
    inputNames: [...session.inputNames],
    outputNames: [...session.outputNames],
    inputMetadata: metadata(session.inputMetadata),
    outputMetadata: metadata(session.outputMetadata),
    warnings: [...warnings],
    inputTransform,
    provider,
  };
}

async function run(
  id: number,
  feeds: Record<string, ThreadTensor>,
  fetches: string[],
): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
  if (!ort || !session)
    return { reply: { kind: 'error', id, message: 'onnxruntime worker: no session' }, transfer: [] };
  try {
    const inputs: Record<string, Ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) inputs[name] = new ort.Tensor(t.type, t.data, t.dims);
    const out = await session.run(inputs, fetches);
    const outputs: Record<string, ThreadTensor> = {};
    const transfer = new Set<ArrayBuffer>();
    for (const [name, t] of Object.entries(out)) {
      const data = t.data as ThreadTensor['data'];
      outputs[name] = { type: t.type as ThreadTensor['type'], data, dims: [...t.dims] };
      if (data.buffer instanceof ArrayBuffer) transfer.add(data.buffer);
    }
    for (const t of Object.values(feeds)) if (t.data.buffer instanceof ArrayBuffer) transfer.add(t.data.buffer);
    return { reply: { kind: 'result', id, outputs, inputs: feeds }, transfer: [...transfer] };
  } catch (error) {
    return { reply: { kind: 'error', id, message: firstLine(error) }, transfer: [] };
  }
}

// Requests are handled strictly in order: each waits for the previous one.
let queue: Promise<void> = Promise.resolve();
port.on('message', (request: WorkerRequest) => {
  queue = queue.then(async () => {
    if (request.kind === 'open') {
      port.postMessage(await open(request.modelPath, request.threads, request.gpus, request.pixelTransform));
    } else {
      const { reply, transfer } = await run(request.id, request.feeds, request.fetches);
      port.postMessage(reply, transfer);
    }
  });
});
