/**
 * Which onnxruntime execution provider a session asks for, and why it fell back to CPU.
 *
 * A stage that the runner assigned GPUs (ctx.devices.gpus, physical indices; the runner also sets
 * CUDA_VISIBLE_DEVICES to them) asks for the CUDA provider on the first of them. onnxruntime-node
 * loads that provider from libonnxruntime_providers_cuda.so next to its binding (installed by
 * `npm run gpu:setup`, see tools/gpu-setup.mjs) and the CUDA libraries that library needs. When
 * either cannot load, onnxruntime throws only "Failed to load shared library" (the details go to
 * its own log on stderr), so `diagnoseCudaProvider` finds the missing file itself.
 *
 * No onnxruntime import here: callers pass their session factory, so this module loads nowhere
 * else than where onnxruntime is already loaded.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** What a session asks for: CPU, or CUDA on the device with this ordinal (as the process sees it). */
export type ProviderRequest =
  | { name: 'cpu'; reason?: string }
  | { name: 'cuda'; deviceId: number; physicalGpu: number };

/** What a session got: the provider it runs on, and, when CUDA was asked for but CPU runs, why. */
export interface ProviderOutcome {
  name: 'cuda' | 'cpu';
  /** CUDA device ordinal inside this process. */
  deviceId?: number;
  /** The runner's physical GPU index. */
  physicalGpu?: number;
  /** Set when CUDA was asked for and the session runs on CPU instead. */
  fallback?: string;
}

/** One entry of onnxruntime's `executionProviders` session option, as this module builds them. */
export type ExecutionProviderEntry = 'cpu' | { name: 'cuda'; deviceId: number };

/**
 * The provider to ask for, from the GPUs the runner assigned (physical indices) and the process's
 * CUDA_VISIBLE_DEVICES. CUDA numbers devices by their position in CUDA_VISIBLE_DEVICES, so the
 * ordinal of physical GPU g is g's index there; with the variable unset every device is visible
 * and the ordinal is g itself. A GPU that CUDA_VISIBLE_DEVICES hides means CPU, with the reason.
 */
export function requestedProvider(gpus: readonly number[], cudaVisibleDevices: string | undefined): ProviderRequest {
  const physicalGpu = gpus[0];
  if (physicalGpu === undefined) return { name: 'cpu' };
  if (cudaVisibleDevices === undefined) return { name: 'cuda', deviceId: physicalGpu, physicalGpu };
  const visible = cudaVisibleDevices
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const deviceId = visible.indexOf(String(physicalGpu));
  if (deviceId < 0) {
    return {
      name: 'cpu',
      reason: `GPU ${physicalGpu} assigned by the runner is not among CUDA_VISIBLE_DEVICES=${JSON.stringify(cudaVisibleDevices)}`,
    };
  }
  return { name: 'cuda', deviceId, physicalGpu };
}

/** onnxruntime's `executionProviders` option for a request: CUDA first with CPU for the nodes CUDA lacks. */
export function executionProviders(request: ProviderRequest): ExecutionProviderEntry[] {
  return request.name === 'cuda' ? [{ name: 'cuda', deviceId: request.deviceId }, 'cpu'] : ['cpu'];
}

/** "cuda (device 0 = GPU 2)", "cpu", or "cpu (CUDA unavailable: ...)", for logs. */
export function describeProvider(outcome: ProviderOutcome): string {
  if (outcome.name === 'cuda') return `cuda (device ${outcome.deviceId} = GPU ${outcome.physicalGpu})`;
  return outcome.fallback ? `cpu (CUDA unavailable: ${outcome.fallback})` : 'cpu';
}

/**
 * The library a dynamic-loader error names as missing: for "libcublasLt.so.13: cannot open shared
 * object file: No such file or directory" that is libcublasLt.so.13 (the loader names the first
 * dependency it cannot find, or the file itself). Undefined for other errors (wrong ELF class,
 * undefined symbols, ...).
 */
export function missingLibraryInLoadError(message: string): string | undefined {
  const match = /(?:^|[\s/'"(])((?:lib)?[\w.+-]+\.so(?:\.[\w]+)*): cannot open shared object file/.exec(message);
  return match?.[1];
}

/**
 * Tries to load a shared library into this process with dlopen (process.dlopen); returns the
 * loader's error, or undefined when it loaded. process.dlopen also looks for a Node addon in the
 * library; a library that loaded but is no addon ("Module did not self-register") counts as loaded.
 */
export function dlopenError(path: string): string | undefined {
  try {
    process.dlopen({ exports: {} }, path);
    return undefined;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (/did not self-register/.test(message)) return undefined;
    return message.split('\n')[0]!;
  }
}

/** Where onnxruntime-node's native binding lives, and its version (from its package.json). */
export interface OnnxruntimeNodeInstall {
  version: string;
  /** The folder of onnxruntime_binding.node and libonnxruntime.so.1, where provider libraries go. */
  binDir: string;
}

/** Finds the onnxruntime-node that `from` (a file URL or path) resolves, as Node would import it. */
export function onnxruntimeNodeInstall(from: string = import.meta.url): OnnxruntimeNodeInstall {
  const require = createRequire(from);
  const pkgPath = require.resolve('onnxruntime-node/package.json');
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { version?: unknown; binary?: { napi_versions?: unknown } };
  if (typeof pkg.version !== 'string') throw new Error(`${pkgPath}: no version`);
  const napi =
    Array.isArray(pkg.binary?.napi_versions) && typeof pkg.binary.napi_versions[0] === 'number'
      ? pkg.binary.napi_versions[0]
      : 6;
  return {
    version: pkg.version,
    binDir: join(dirname(pkgPath), 'bin', `napi-v${napi}`, process.platform, process.arch),
  };
}

/** The provider libraries onnxruntime loads for CUDA, both next to its binding. */
export const CUDA_PROVIDER_FILES = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'] as const;

/** Written next to the binding by the GPU set-up step: which package the provider libraries came from. */
export const GPU_PROVIDER_MARKER = 'distillery-gpu-provider.json';

/** Contents of GPU_PROVIDER_MARKER. */
export interface GpuProviderMarker {
  package: string;
  packageVersion: string;
  /** The onnxruntime release the provider libraries were built for. */
  onnxruntimeVersion: string;
}

/** cuDNN is loaded by the provider at run time (not a link-time dependency), under these names. */
const CUDNN_NAMES = ['libcudnn.so.9', 'libcudnn.so'];

/**
 * Why the CUDA provider did not load, naming the missing file: a provider library that is not
 * installed, provider libraries built for another onnxruntime release, a CUDA library that the
 * dynamic loader cannot find (libcudart, libcublas, libcublasLt, libcurand, libcuda), or cuDNN.
 * `load` tries one library (dlopenError in production; tests pass the same).
 */
export function diagnoseCudaProvider(
  install: OnnxruntimeNodeInstall,
  load: (path: string) => string | undefined = dlopenError,
): string {
  const setup = 'run `npm run gpu:setup` (README, "GPU")';
  for (const file of CUDA_PROVIDER_FILES) {
    if (!existsSync(join(install.binDir, file)))
      return `${file} is not installed next to onnxruntime-node's binding (${install.binDir}); ${setup}`;
  }
  const markerPath = join(install.binDir, GPU_PROVIDER_MARKER);
  if (existsSync(markerPath)) {
    try {
      const marker = JSON.parse(readFileSync(markerPath, 'utf8')) as Partial<GpuProviderMarker>;
      if (marker.onnxruntimeVersion && !sameRelease(marker.onnxruntimeVersion, install.version)) {
        return `the provider libraries in ${install.binDir} were built for onnxruntime ${marker.onnxruntimeVersion} but onnxruntime-node is ${install.version}; ${setup}`;
      }
    } catch {
      // An unreadable marker says nothing about the libraries; go on and load them.
    }
  }
  for (const file of CUDA_PROVIDER_FILES) {
    const error = load(join(install.binDir, file));
    if (error === undefined) continue;
    const missing = missingLibraryInLoadError(error);
    if (missing && missing !== file && !missing.endsWith(`/${file}`)) {
      return `${missing} cannot be found (needed by ${file}); put the folder holding CUDA's ${missing.replace(/\.so.*$/, '')} on LD_LIBRARY_PATH`;
    }
    return `${file} does not load: ${error}`;
  }
  if (CUDNN_NAMES.every((name) => load(name) !== undefined)) {
    return `libcudnn (cuDNN 9, loaded by the provider at run time as libcudnn.so) cannot be found; put its folder on LD_LIBRARY_PATH`;
  }
  return PROVIDER_LOADS;
}

/** diagnoseCudaProvider's answer when every library loads (the cause is then in onnxruntime's own log). */
export const PROVIDER_LOADS =
  "the provider libraries and CUDA libraries load; onnxruntime's own log on stderr says why the provider failed (e.g. no CUDA device, or a driver older than the CUDA runtime)";

/** Same onnxruntime release: equal major.minor (provider libraries and the core library must match). */
export function sameRelease(a: string, b: string): boolean {
  const release = (v: string) => v.split('.').slice(0, 2).join('.');
  return release(a) === release(b);
}

/** A session opened through `openWithProvider`: the session, the provider it runs on, and the warning if it fell back. */
export interface ProviderSession<S> {
  session: S;
  provider: ProviderOutcome;
  warning?: string;
}

/**
 * Creates a session on the requested provider. A CUDA request whose session cannot be created is
 * retried on CPU, with a warning that names the cause (`diagnose`, called only then); a CPU
 * session's error is thrown as it is.
 */
export async function openWithProvider<S>(
  request: ProviderRequest,
  create: (providers: ExecutionProviderEntry[]) => Promise<S>,
  diagnose: () => string,
): Promise<ProviderSession<S>> {
  if (request.name === 'cpu') {
    const session = await create(['cpu']);
    if (!request.reason) return { session, provider: { name: 'cpu' } };
    return {
      session,
      provider: { name: 'cpu', fallback: request.reason },
      warning: `not using a GPU: ${request.reason}; running on CPU`,
    };
  }
  try {
    const session = await create(executionProviders(request));
    return { session, provider: { name: 'cuda', deviceId: request.deviceId, physicalGpu: request.physicalGpu } };
  } catch (error) {
    const cause = diagnose();
    const message = (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
    const session = await create(['cpu']);
    return {
      session,
      provider: { name: 'cpu', fallback: cause },
      warning: `CUDA execution provider unavailable on GPU ${request.physicalGpu} (onnxruntime: ${message}): ${cause}. Running on CPU.`,
    };
  }
}
