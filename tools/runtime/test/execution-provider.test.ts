import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder, encodeModel, writeModelFile } from '../src/onnx/index.js';
import {
  CUDA_PROVIDER_FILES,
  GPU_PROVIDER_MARKER,
  describeProvider,
  diagnoseCudaProvider,
  dlopenError,
  executionProviders,
  missingLibraryInLoadError,
  onnxruntimeNodeInstall,
  openWithProvider,
  requestedProvider,
  sameRelease,
} from '../src/onnx/execution-provider.js';
import { ThreadedSession } from '../src/onnx/session-thread.js';

const MODULE = new URL('../src/onnx/execution-provider.js', import.meta.url).href;

/**
 * Runs `body` (JavaScript using the module's exports as `m`) in a fresh Node process and returns
 * what it prints as JSON: dlopen results depend on what the process already loaded (onnxruntime
 * itself, once another test ran a session), so those checks start from a clean process.
 */
function inFreshProcess(body: string): unknown {
  const script = `const m = await import(${JSON.stringify(MODULE)}); console.log(JSON.stringify(await (async () => { ${body} })()));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout.trim().split('\n').at(-1)!);
}

test('requestedProvider: CPU without GPUs; CUDA on the ordinal of the assigned GPU under CUDA_VISIBLE_DEVICES', () => {
  assert.deepEqual(requestedProvider([], undefined), { name: 'cpu' });
  assert.deepEqual(requestedProvider([], ''), { name: 'cpu' });
  // Unset: every device is visible, ordinal = physical index.
  assert.deepEqual(requestedProvider([2], undefined), { name: 'cuda', deviceId: 2, physicalGpu: 2 });
  // The runner sets CUDA_VISIBLE_DEVICES to the assigned GPUs: the first is ordinal 0.
  assert.deepEqual(requestedProvider([2, 3], '2,3'), { name: 'cuda', deviceId: 0, physicalGpu: 2 });
  assert.deepEqual(requestedProvider([3], '1, 3'), { name: 'cuda', deviceId: 1, physicalGpu: 3 });
  const hidden = requestedProvider([3], '0,1');
  assert.equal(hidden.name, 'cpu');
  assert.match(hidden.name === 'cpu' ? (hidden.reason ?? '') : '', /GPU 3 .*CUDA_VISIBLE_DEVICES="0,1"/);
  assert.deepEqual(executionProviders({ name: 'cuda', deviceId: 1, physicalGpu: 3 }), [
    { name: 'cuda', deviceId: 1 },
    'cpu',
  ]);
  assert.deepEqual(executionProviders({ name: 'cpu' }), ['cpu']);
  assert.equal(describeProvider({ name: 'cuda', deviceId: 0, physicalGpu: 2 }), 'cuda (device 0 = GPU 2)');
  assert.ok(sameRelease('1.29.0', '1.29.1') && !sameRelease('1.29.0', '1.30.0'));
});

test('missingLibraryInLoadError names the library in real dynamic-loader errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ep-'));
  try {
    const { binDir } = onnxruntimeNodeInstall();
    // onnxruntime's binding alone in a folder: the loader cannot find the libonnxruntime.so.1 it needs.
    copyFileSync(join(binDir, 'onnxruntime_binding.node'), join(dir, 'binding-alone.so'));
    const errors = inFreshProcess(
      `return [m.dlopenError(${JSON.stringify(join(dir, 'libabsent_x.so.3'))}), m.dlopenError(${JSON.stringify(join(dir, 'binding-alone.so'))}), m.dlopenError(${JSON.stringify(join(binDir, 'libonnxruntime.so.1'))})];`,
    ) as (string | null)[];
    assert.equal(missingLibraryInLoadError(errors[0]!), 'libabsent_x.so.3');
    assert.equal(missingLibraryInLoadError(errors[1]!), 'libonnxruntime.so.1', errors[1]!);
    assert.equal(errors[2], null, 'a library that loads gives no error');
    assert.equal(missingLibraryInLoadError('undefined symbol: cublasLtCreate'), undefined);
    assert.equal(dlopenError(join(dir, 'absent.so'))?.includes('absent.so'), true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('diagnoseCudaProvider names the missing provider file, a release mismatch, or the CUDA library the loader cannot find', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ep-'));
  try {
    const install = { version: '1.30.0', binDir: dir };
    assert.match(
      diagnoseCudaProvider(install),
      /libonnxruntime_providers_shared\.so is not installed next to onnxruntime-node's binding .*npm run gpu:setup/,
    );
    writeFileSync(join(dir, CUDA_PROVIDER_FILES[0]), '');
    assert.match(diagnoseCudaProvider(install), /libonnxruntime_providers_cuda\.so is not installed/);
    // Stand-ins that fail as a provider missing a CUDA library does: a real library whose dependency is absent.
    const { binDir } = onnxruntimeNodeInstall();
    for (const file of CUDA_PROVIDER_FILES) copyFileSync(join(binDir, 'onnxruntime_binding.node'), join(dir, file));
    writeFileSync(
      join(dir, GPU_PROVIDER_MARKER),
      JSON.stringify({ package: 'p', packageVersion: '0.4.9', onnxruntimeVersion: '1.29.0' }),
    );
    assert.match(diagnoseCudaProvider(install), /built for onnxruntime 1\.29\.0 but onnxruntime-node is 1\.30\.0/);
    const cause = inFreshProcess(
      `return m.diagnoseCudaProvider({ version: '1.29.0', binDir: ${JSON.stringify(dir)} });`,
    ) as string;
    assert.match(
      cause,
      /^libonnxruntime\.so\.1 cannot be found \(needed by libonnxruntime_providers_shared\.so\); put the folder .* on LD_LIBRARY_PATH/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('openWithProvider: a CUDA request on this machine falls back to a working CPU session, with the reason', async () => {
  const ort = await import('onnxruntime-node');
  const bytes = encodeModel(
    new GraphBuilder('relu', { opset: 13 })
      .input('x', 'float32', ['N', 2])
      .node('Relu', ['x'], ['y'])
      .output('y', 'float32', ['N', 2])
      .build(),
  );
  const asked: string[] = [];
  const opened = await openWithProvider(
    requestedProvider([0], undefined),
    (eps) => {
      asked.push(JSON.stringify(eps));
      return ort.InferenceSession.create(bytes, { executionProviders: eps });
    },
    () => diagnoseCudaProvider(onnxruntimeNodeInstall()),
  );
  // onnxruntime-node without the provider libraries (as installed by npm ci) cannot load CUDA.
  assert.deepEqual(asked, ['[{"name":"cuda","deviceId":0},"cpu"]', '["cpu"]']);
  assert.equal(opened.provider.name, 'cpu');
  assert.match(
    opened.warning ?? '',
    /CUDA execution provider unavailable on GPU 0 .*libonnxruntime_providers_shared\.so is not installed.*Running on CPU/,
  );
  const out = await opened.session.run({ x: new ort.Tensor('float32', Float32Array.from([-1, 2]), [1, 2]) });
  assert.deepEqual(Array.from(out.y!.data as Float32Array), [0, 2]);
  await opened.session.release();
});

test('ThreadedSession with a GPU assigned: falls back to CPU with a warning naming the missing library, and computes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ep-'));
  const saved = process.env.CUDA_VISIBLE_DEVICES;
  try {
    const model = join(dir, 'm.onnx');
    writeModelFile(
      model,
      new GraphBuilder('neg', { opset: 13 })
        .input('x', 'float32', ['N', 3])
        .node('Neg', ['x'], ['y'])
        .output('y', 'float32', ['N', 3])
        .build(),
    );
    const warnings: string[] = [];
    process.env.CUDA_VISIBLE_DEVICES = '5';
    const session = await ThreadedSession.open(model, { threads: 1, gpus: [5], warn: (m) => warnings.push(m) });
    try {
      assert.equal(session.executionProvider.name, 'cpu');
      assert.match(session.executionProvider.fallback ?? '', /libonnxruntime_providers_shared\.so is not installed/);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /CUDA execution provider unavailable on GPU 5/);
      assert.match(describeProvider(session.executionProvider), /^cpu \(CUDA unavailable: /);
      const { outputs } = await session.run(
        { x: { type: 'float32', data: Float32Array.from([1, -2, 3]), dims: [1, 3] } },
        ['y'],
      );
      assert.deepEqual(Array.from(outputs.y!.data as Float32Array), [-1, 2, -3]);
    } finally {
      await session.release();
    }
    // A GPU that CUDA_VISIBLE_DEVICES hides: CPU, and the warning says so.
    process.env.CUDA_VISIBLE_DEVICES = '0';
    warnings.length = 0;
    const hidden = await ThreadedSession.open(model, { threads: 1, gpus: [5], warn: (m) => warnings.push(m) });
    await hidden.release();
    assert.match(warnings[0] ?? '', /GPU 5 assigned by the runner is not among CUDA_VISIBLE_DEVICES="0"/);
    // No GPU: CPU, no warning.
    warnings.length = 0;
    const cpu = await ThreadedSession.open(model, { threads: 1, warn: (m) => warnings.push(m) });
    await cpu.release();
    assert.deepEqual([cpu.executionProvider, warnings], [{ name: 'cpu' }, []]);
  } finally {
    if (saved === undefined) delete process.env.CUDA_VISIBLE_DEVICES;
    else process.env.CUDA_VISIBLE_DEVICES = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});
