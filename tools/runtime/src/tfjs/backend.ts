/**
 * TensorFlow.js backend selection at run time.
 *
 * Order tried (first that loads wins, every attempt is logged):
 *   1. `tensorflow` from @tensorflow/tfjs-node-gpu  (only when the runner assigned GPUs)
 *   2. `tensorflow` from @tensorflow/tfjs-node      (libtensorflow on the CPU)
 *   3. `wasm` from @tensorflow/tfjs-backend-wasm    (XNNPACK, SIMD, with threads = assigned CPUs)
 *   4. `cpu` from @tensorflow/tfjs-backend-cpu      (plain JS)
 * Both tfjs-node packages are optional dependencies: their install script downloads libtensorflow,
 * which fails offline (or is blocked by npm 11), so the package is present but its binding is not;
 * the import then throws and we fall through.
 *
 * Multithreaded wasm in Node: tfjs-backend-wasm 4.x refuses threads under Node
 * (WASM_HAS_MULTITHREAD_SUPPORT is hard-wired to false there, tfjs issue 3830) and its C side caps
 * the pool at hardwareConcurrency/2. Its threaded build does work under Node once the pthread
 * worker script and the main script it hands to workers as Blob URLs are real files; we write
 * those two files to a temp directory while the backend initialises (see initWasmThreads).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type * as TfCore from '@tensorflow/tfjs-core';
import { writeFileAtomicSync } from '@distillery/core/plugin';

export type Tf = typeof TfCore;

/** Which backend to use: `auto` runs the order above; a name forces that backend (errors if it cannot load). */
export type BackendPreference = 'auto' | 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';

export interface BackendOptions {
  /** CPUs assigned to the stage: the wasm thread count (1 = single-threaded build). */
  cpus: number;
  /** GPUs assigned by the runner; tfjs-node-gpu is only tried when non-empty. */
  gpus: readonly number[];
  prefer?: BackendPreference;
  /** Receives one line per attempt and one for the choice. */
  log?: (message: string) => void;
}

/** The backend in use and how it was chosen. */
export interface BackendChoice {
  tf: Tf;
  /** What was loaded: 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu'. */
  name: Exclude<BackendPreference, 'auto'>;
  /** tfjs backend name (`tf.getBackend()`). */
  tfBackend: string;
  /** Threads the backend computes with (wasm: XNNPACK pool size; others: as reported or assumed). */
  threads: number;
  /** Every attempt that failed, with the reason. */
  skipped: { name: string; reason: string }[];
}

let current: { key: string; choice: BackendChoice } | undefined;

function errorText(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0]!.slice(0, 200);
}

/** Selects, initialises and logs the backend. Idempotent for the same options within a process. */
export async function selectBackend(options: BackendOptions): Promise<BackendChoice> {
  const prefer = options.prefer ?? 'auto';
  const cpus = Math.max(1, Math.floor(options.cpus));
  const key = JSON.stringify([prefer, cpus, options.gpus]);
  const log = options.log ?? (() => {});
  if (current) {
    if (current.key !== key && current.choice.name !== prefer && prefer !== 'auto') {
      throw new Error(
        `tfjs backend already initialised as ${current.choice.name} in this process; cannot switch to ${prefer}`,
      );
    }
    return current.choice;
  }
  const tf = (await import('@tensorflow/tfjs-core')) as Tf;
  await registerGradients(tf);
  const order: Exclude<BackendPreference, 'auto'>[] =
    prefer === 'auto' ? ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] : [prefer];
  const skipped: { name: string; reason: string }[] = [];
  for (const name of order) {
    try {
      if (name === 'tensorflow-gpu' && options.gpus.length === 0) {
        skipped.push({ name, reason: 'no GPU assigned' });
        continue;
      }
      const threads = await loadBackend(tf, name, cpus, log);
      const choice: BackendChoice = { tf, name, tfBackend: tf.getBackend(), threads, skipped };
      for (const s of skipped) log(`tfjs backend ${s.name} skipped: ${s.reason}`);
      log(`tfjs backend: ${name} (tfjs ${tf.version_core}, ${threads} thread${threads === 1 ? '' : 's'})`);
      current = { key, choice };
      return choice;
    } catch (error) {
      // A stuck start-up cannot be followed by another backend: tfjs waits for the pending one first.
      if (error instanceof BackendStuckError) throw error;
      skipped.push({ name, reason: errorText(error) });
    }
  }
  throw new Error(`no tfjs backend could be loaded: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`);
}

/**
 * tfjs-core's CommonJS bundle registers no gradient functions (only the tfjs / tfjs-layers bundles
 * do, into tfjs-core's process-global registry); without them autodiff fails on the first op.
 * tfjs-layers (pure JS, peer of tfjs-core) is imported for that side effect only.
 */
async function registerGradients(tf: Tf): Promise<void> {
  if (tf.getGradient('Sum') !== undefined) return;
  // @ts-ignore -- no type declarations are needed for a side-effect import
  await import('@tensorflow/tfjs-layers');
  if (tf.getGradient('Sum') === undefined)
    throw new Error('tfjs gradients could not be registered (@tensorflow/tfjs-layers missing?)');
}

/** The threaded wasm pool did not become ready in time. */
export class BackendStuckError extends Error {}

async function loadBackend(
  tf: Tf,
  name: Exclude<BackendPreference, 'auto'>,
  cpus: number,
  log: (message: string) => void,
): Promise<number> {
  switch (name) {
    case 'tensorflow-gpu':
    case 'tensorflow': {
      // Importing registers the 'tensorflow' backend with the shared tfjs-core instance.
      await import(name === 'tensorflow-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node');
      if (!(await tf.setBackend('tensorflow'))) throw new Error('setBackend(tensorflow) failed');
      return cpus;
    }
    case 'wasm': {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      if (cpus > 1) {
        // Said before the start-up, so a stage log is never empty while the pool starts.
        log(`tfjs backend wasm: starting a pool of ${cpus} threads`);
        return initWasmThreads(tf, wasm, cpus);
      }
      wasm.setThreadsCount(1);
      if (!(await tf.setBackend('wasm'))) throw new Error('setBackend(wasm) failed');
      return wasm.getThreadsCount();
    }
    case 'cpu': {
      await import('@tensorflow/tfjs-backend-cpu');
      if (!(await tf.setBackend('cpu'))) throw new Error('setBackend(cpu) failed');
      return 1;
    }
  }
}

/** A node worker_threads Worker as emscripten holds it. */
interface WorkerLike {
  unref?: () => void;
}

/** Source text of a Blob built from strings, kept so it can be written to a file synchronously. */
const BLOB_TEXT = Symbol('blobText');

/**
 * Threaded start-up normally takes 1-5 s; past this the pool is taken to be stuck and the stage
 * fails with a message saying so (DISTILL_WASM_START_TIMEOUT, seconds, overrides it).
 */
const WASM_START_TIMEOUT_MS = 120_000;

/**
 * Initialises the threaded-SIMD wasm build under Node with `threads` XNNPACK threads.
 * Temporarily patches (and always restores) globalThis.Blob, URL.createObjectURL and os.cpus:
 * - the worker script (a Blob URL in tfjs) becomes a .cjs file; it is prefixed so that, inside
 *   the worker, the main-script Blob it receives maps to our main-script file;
 * - the main script (emscripten factory source, a Blob) becomes a .cjs file, prefixed with the
 *   bundle-level variables its source text refers to (rollup's require$$N / commonjsGlobal);
 * - os.cpus reports 2*threads CPUs because the C side uses hardwareConcurrency/2 as the cap.
 *
 * The worker script is written once. emscripten asks for it (tfjs's locateFile builds a new Blob
 * URL) once per pool worker, 8 in all; rewriting the file each time (truncate, then write) raced
 * with workers already starting: a worker that read the truncated, empty file ran nothing and
 * exited 0 without ever reporting "loaded", and the module, which waits for all 8, never became
 * ready. In a stage process (kept alive by its IPC channel) that was a silent hang with an empty
 * log; reproduced in 2 of 55 fresh processes on the 2-core machine (2026-12-03) before this fix.
 * A watchdog bounds the start-up in any case.
 */
async function initWasmThreads(
  tf: Tf,
  wasm: typeof import('@tensorflow/tfjs-backend-wasm'),
  threads: number,
): Promise<number> {
  const dir = mkdtempSync(join(os.tmpdir(), 'distillery-tfjs-wasm-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const mainPath = join(dir, 'wasm-main.cjs');
  const workerPath = join(dir, 'wasm-worker.cjs');
  const OriginalBlob = globalThis.Blob;
  const originalCreateObjectURL = URL.createObjectURL;
  const originalCpus = os.cpus;
  class TextBlob extends OriginalBlob {
    readonly [BLOB_TEXT]: string | undefined;
    constructor(parts: ConstructorParameters<typeof Blob>[0] = [], options?: ConstructorParameters<typeof Blob>[1]) {
      super(parts, options);
      const text = parts.every((p) => typeof p === 'string') ? parts.join('') : undefined;
      this[BLOB_TEXT] = text;
      if (text?.startsWith('var WasmBackendModuleThreadedSimd')) {
        writeFileAtomicSync(
          mainPath,
          "var require$$0=require('fs'),require$$1=require('path'),require$$3=require('perf_hooks')," +
            "require$$4=require('os'),commonjsGlobal=globalThis;" +
            text,
        );
      }
    }
  }
  globalThis.Blob = TextBlob;
  let workerWritten = false;
  URL.createObjectURL = (blob: Blob): string => {
    const text = (blob as Partial<TextBlob>)[BLOB_TEXT];
    if (typeof text === 'string' && text.includes('worker_threads')) {
      // Once: workers allocated earlier may be reading it right now (see above).
      if (!workerWritten)
        writeFileAtomicSync(
          workerPath,
          `URL.createObjectURL=()=>${JSON.stringify(mainPath)};URL.revokeObjectURL=()=>{};` + text,
        );
      workerWritten = true;
      return workerPath;
    }
    return originalCreateObjectURL(blob);
  };
  os.cpus = () => {
    const real = originalCpus();
    return Array.from({ length: 2 * threads }, (_, i) => real[i % real.length]!);
  };
  const limitMs = Number(process.env.DISTILL_WASM_START_TIMEOUT ?? '') * 1000 || WASM_START_TIMEOUT_MS;
  let watchdog: NodeJS.Timeout | undefined;
  try {
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
    wasm.setThreadsCount(threads);
    const stuck = new Promise<never>((_, reject) => {
      watchdog = setTimeout(
        () =>
          reject(
            new BackendStuckError(
              `the threaded wasm backend did not start within ${limitMs / 1000} s (its pthread pool never became ready); failing rather than hanging`,
            ),
          ),
        limitMs,
      );
    });
    if (!(await Promise.race([tf.setBackend('wasm'), stuck]))) throw new Error('setBackend(wasm) failed');
    await Promise.race([tf.ready(), stuck]);
    // The pool's worker threads must not keep the process alive once the work is done.
    const pthreads = (
      tf.backend() as unknown as { wasm?: { PThread?: { unusedWorkers: WorkerLike[]; runningWorkers: WorkerLike[] } } }
    ).wasm?.PThread;
    for (const worker of [...(pthreads?.unusedWorkers ?? []), ...(pthreads?.runningWorkers ?? [])]) worker.unref?.();
  } finally {
    clearTimeout(watchdog);
    globalThis.Blob = OriginalBlob;
    URL.createObjectURL = originalCreateObjectURL;
    os.cpus = originalCpus;
  }
  return wasm.getThreadsCount();
}
