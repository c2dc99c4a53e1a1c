import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CUDA_PROVIDER_FILES,
  GPU_PROVIDER_MARKER,
  diagnoseCudaProvider,
  onnxruntimeNodeInstall,
} from '../src/onnx/execution-provider.js';
import {
  PROVIDER_LIB_DIR,
  checkProviderMatch,
  installProviderLibraries,
  onnxruntimeVersionInReadme,
  readProviderPackage,
} from '../src/onnx/gpu-setup.js';

const SETUP_CLI = fileURLToPath(new URL('../../../gpu-setup.mjs', import.meta.url));

/**
 * A provider package laid out as com.github.asus4.onnxruntime.linux-x64-gpu is (package.json,
 * README.md naming the onnxruntime release, Plugins/Linux/x64/*.so), with stand-in libraries
 * whose bytes hold the release string as onnxruntime's do.
 */
function fakeProviderPackage(root: string, release: string, readmeRelease = release): string {
  const dir = join(root, 'package');
  mkdirSync(join(dir, PROVIDER_LIB_DIR), { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'com.example.provider', version: '0.4.9' }));
  writeFileSync(
    join(dir, 'README.md'),
    `# Provider\n\n## Tested environment\n\n- ONNX Runtime: [${readmeRelease}](https://example.invalid)\n`,
  );
  for (const file of CUDA_PROVIDER_FILES)
    writeFileSync(
      join(dir, PROVIDER_LIB_DIR, file),
      Buffer.concat([Buffer.from('not a shared library\0'), Buffer.from(`${release}\0`), Buffer.alloc(64, 7)]),
    );
  return dir;
}

test('readProviderPackage: the onnxruntime release from the README, confirmed in the library; missing pieces named', () => {
  const root = mkdtempSync(join(tmpdir(), 'gpu-setup-'));
  try {
    assert.equal(
      onnxruntimeVersionInReadme(
        '- ONNX Runtime: [1.29.0](https://github.com/microsoft/onnxruntime/releases/tag/v1.29.0)',
      ),
      '1.29.0',
    );
    const pkg = readProviderPackage(fakeProviderPackage(join(root, 'a'), '1.29.0'));
    assert.deepEqual(
      { name: pkg.name, version: pkg.version, release: pkg.onnxruntimeVersion },
      { name: 'com.example.provider', version: '0.4.9', release: '1.29.0' },
    );
    // README and library disagree: refused.
    assert.throws(
      () => readProviderPackage(fakeProviderPackage(join(root, 'b'), '1.28.0', '1.29.0')),
      /version string 1\.29\.0 .* is not in the library/,
    );
    const noReadme = fakeProviderPackage(join(root, 'c'), '1.29.0');
    writeFileSync(join(noReadme, 'README.md'), '# nothing here\n');
    assert.throws(() => readProviderPackage(noReadme), /README\.md: no "ONNX Runtime: \[x\.y\.z\]" line/);
    const noLib = fakeProviderPackage(join(root, 'd'), '1.29.0');
    rmSync(join(noLib, PROVIDER_LIB_DIR, 'libonnxruntime_providers_cuda.so'));
    assert.throws(() => readProviderPackage(noLib), /libonnxruntime_providers_cuda\.so is missing/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('installProviderLibraries: refuses another onnxruntime release (writing nothing); installs a matching one with its marker', () => {
  const root = mkdtempSync(join(tmpdir(), 'gpu-setup-'));
  try {
    const binDir = join(root, 'bin');
    mkdirSync(binDir);
    copyFileSync(
      join(onnxruntimeNodeInstall().binDir, 'onnxruntime_binding.node'),
      join(binDir, 'onnxruntime_binding.node'),
    );
    const provider = readProviderPackage(fakeProviderPackage(root, '1.29.0'));
    assert.throws(
      () => installProviderLibraries(provider, { version: '1.30.0', binDir }),
      /onnxruntime-node is 1\.30\.0 but com\.example\.provider@0\.4\.9 .* built for onnxruntime 1\.29\.0.*pin "onnxruntime-node": "1\.29\.0".*Nothing was installed/,
    );
    assert.deepEqual(readdirSync(binDir), ['onnxruntime_binding.node']);
    assert.doesNotThrow(() => checkProviderMatch(provider, { version: '1.29.3', binDir }), 'patch releases match');
    const written = installProviderLibraries(provider, { version: '1.29.0', binDir });
    assert.deepEqual(
      written.map((p) => p.slice(binDir.length + 1)),
      [...CUDA_PROVIDER_FILES, GPU_PROVIDER_MARKER],
    );
    assert.deepEqual(
      readdirSync(binDir).sort(),
      [...CUDA_PROVIDER_FILES, GPU_PROVIDER_MARKER, 'onnxruntime_binding.node'].sort(),
    );
    for (const file of CUDA_PROVIDER_FILES)
      assert.deepEqual(readFileSync(join(binDir, file)), readFileSync(join(provider.dir, PROVIDER_LIB_DIR, file)));
    assert.deepEqual(JSON.parse(readFileSync(join(binDir, GPU_PROVIDER_MARKER), 'utf8')), {
      package: 'com.example.provider',
      packageVersion: '0.4.9',
      onnxruntimeVersion: '1.29.0',
    });
    // The runtime diagnosis now gets past the files and reports that the stand-in does not load.
    assert.match(
      diagnoseCudaProvider({ version: '1.29.0', binDir }),
      /^libonnxruntime_providers_shared\.so does not load: .*invalid ELF header/,
    );
    // onnxruntime-node upgraded later: the marker says the libraries are from another release.
    assert.match(
      diagnoseCudaProvider({ version: '1.30.0', binDir }),
      /built for onnxruntime 1\.29\.0 but onnxruntime-node is 1\.30\.0/,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('npm run gpu:setup on this checkout: a provider package for another release is refused with what to pin, and the binding folder is untouched', () => {
  const root = mkdtempSync(join(tmpdir(), 'gpu-setup-'));
  try {
    const { version, binDir } = onnxruntimeNodeInstall();
    const other = version.startsWith('1.29.') ? '1.28.0' : '1.29.0';
    const before = readdirSync(binDir).sort();
    const run = spawnSync(process.execPath, [SETUP_CLI, '--from', fakeProviderPackage(root, other)], {
      encoding: 'utf8',
    });
    assert.equal(run.status, 1, run.stdout + run.stderr);
    assert.match(
      run.stderr,
      new RegExp(
        `GPU set-up refused: onnxruntime-node is ${version.replace(/\./g, '\\.')} .*built for onnxruntime ${other.replace(/\./g, '\\.')}.*pin "onnxruntime-node": "${other.replace(/\./g, '\\.')}"`,
      ),
    );
    assert.deepEqual(readdirSync(binDir).sort(), before);
    assert.ok(!existsSync(join(binDir, GPU_PROVIDER_MARKER)));
    // --check installs nothing and says why CUDA would not load here.
    const check = spawnSync(process.execPath, [SETUP_CLI, '--check'], { encoding: 'utf8' });
    assert.equal(check.status, 1);
    assert.match(check.stdout, /CUDA provider will not load yet: libonnxruntime_providers_shared\.so is not installed/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
