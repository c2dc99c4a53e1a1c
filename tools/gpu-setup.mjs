#!/usr/bin/env node
// Opt-in GPU set-up (`npm run gpu:setup`; README "GPU"): installs onnxruntime's CUDA provider
// libraries next to onnxruntime-node's binding, from the npm package
// com.github.asus4.onnxruntime.linux-x64-gpu, after checking that they were built for the installed
// onnxruntime-node's release (refused otherwise, with what to pin). Never part of `npm ci`.
//
//   node tools/gpu-setup.mjs [--package NAME@VERSION] [--from DIR|TGZ] [--check]
//
//   --package  provider package to fetch with `npm pack` (default com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9)
//   --from     an already downloaded package (.tgz) or unpacked folder instead of fetching (offline)
//   --check    install nothing; say whether the CUDA provider would load here, and if not, why
//
// The logic lives in @distillery/runtime/onnx/gpu-setup (tested); this file parses arguments and fetches.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { PROVIDER_LOADS, diagnoseCudaProvider, onnxruntimeNodeInstall } = await import(
  '@distillery/runtime/onnx/execution-provider'
);
const {
  GPU_PROVIDER_PACKAGE,
  GPU_PROVIDER_PACKAGE_VERSION,
  KNOWN_PROVIDER_RELEASES,
  checkProviderMatch,
  installProviderLibraries,
  readProviderPackage,
} = await import('@distillery/runtime/onnx/gpu-setup');

const { values: args } = parseArgs({
  options: { package: { type: 'string' }, from: { type: 'string' }, check: { type: 'boolean', default: false } },
});
const install = onnxruntimeNodeInstall(import.meta.url);
console.log(`onnxruntime-node ${install.version}, binding in ${install.binDir}`);

/** Says whether the CUDA provider loads in this process (dlopen of the provider and its CUDA libraries). */
function report() {
  const cause = diagnoseCudaProvider(install);
  const loads = cause === PROVIDER_LOADS;
  console.log(
    loads
      ? 'CUDA provider: its libraries and the CUDA libraries load here'
      : `CUDA provider will not load yet: ${cause}`,
  );
  return loads;
}

if (args.check) process.exit(report() ? 0 : 1);

const spec = args.package ?? `${GPU_PROVIDER_PACKAGE}@${GPU_PROVIDER_PACKAGE_VERSION}`;
const work = mkdtempSync(join(tmpdir(), 'distillery-gpu-setup-'));
try {
  let source = args.from;
  if (!source) {
    // A package version whose onnxruntime release is known is refused before the ~180 MB download.
    const release = KNOWN_PROVIDER_RELEASES[spec];
    const at = spec.lastIndexOf('@');
    if (release)
      checkProviderMatch(
        { name: spec.slice(0, at), version: spec.slice(at + 1), onnxruntimeVersion: release },
        install,
      );
    console.log(`fetching ${spec} (about 180 MB) with npm pack`);
    const file = execFileSync('npm', ['pack', spec, '--pack-destination', work, '--silent'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    })
      .trim()
      .split('\n')
      .at(-1);
    source = join(work, file);
  }
  let dir = source;
  if (statSync(source).isFile()) {
    execFileSync('tar', ['-xzf', source, '-C', work]);
    dir = join(work, 'package');
  }
  const provider = readProviderPackage(dir);
  const written = installProviderLibraries(provider, install);
  console.log(
    `installed ${provider.name}@${provider.version} (onnxruntime ${provider.onnxruntimeVersion}):\n  ${written.join('\n  ')}`,
  );
  report();
  console.log(
    'The provider needs CUDA 13 (libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10) and cuDNN 9 (libcudnn.so) on LD_LIBRARY_PATH; `npm run gpu:setup -- --check` says what is missing.',
  );
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
