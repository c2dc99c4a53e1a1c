/**
 * The opt-in GPU set-up step (`npm run gpu:setup`, tools/gpu-setup.mjs): puts onnxruntime's CUDA
 * provider libraries next to onnxruntime-node's binding, where its CPU library loads them.
 *
 * onnxruntime-node's own install script would download them (from a feed this project cannot
 * reach; .npmrc skips it). The npm package `com.github.asus4.onnxruntime.linux-x64-gpu` ships
 * them (built against CUDA 13). Provider libraries load only into the onnxruntime release they
 * were built for, so the step reads that release from the package and refuses a mismatch before
 * writing anything.
 */
import { copyFileSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CUDA_PROVIDER_FILES,
  GPU_PROVIDER_MARKER,
  sameRelease,
  type GpuProviderMarker,
  type OnnxruntimeNodeInstall,
} from './execution-provider.js';

/** The provider package on the npm registry, and the version this step installs by default. */
export const GPU_PROVIDER_PACKAGE = 'com.github.asus4.onnxruntime.linux-x64-gpu';
export const GPU_PROVIDER_PACKAGE_VERSION = '0.4.9';

/**
 * onnxruntime releases of provider package versions, as their README.md and libraries say (read
 * 2026-12-03), so that a mismatch is refused before a ~180 MB download: the registry's metadata
 * has no README. The unpacked package is checked again (readProviderPackage) either way.
 */
export const KNOWN_PROVIDER_RELEASES: Readonly<Record<string, string>> = {
  [`${GPU_PROVIDER_PACKAGE}@0.4.9`]: '1.29.0',
};

/** Where the provider libraries lie inside that package. */
export const PROVIDER_LIB_DIR = join('Plugins', 'Linux', 'x64');

/** An unpacked provider package. */
export interface ProviderPackage {
  dir: string;
  name: string;
  version: string;
  /** The onnxruntime release its libraries were built for. */
  onnxruntimeVersion: string;
}

/** The onnxruntime release a provider package's README names ("- ONNX Runtime: [1.29.0](...)"). */
export function onnxruntimeVersionInReadme(readme: string): string | undefined {
  return /ONNX Runtime:\s*\[(\d+\.\d+\.\d+)\]/.exec(readme)?.[1];
}

/**
 * Reads an unpacked provider package (its folder holds package.json, README.md and
 * Plugins/Linux/x64/*.so). The release the README names must also be written in the CUDA provider
 * library itself (onnxruntime embeds its version string), so a README that drifted is caught.
 */
export function readProviderPackage(dir: string): ProviderPackage {
  const pkgPath = join(dir, 'package.json');
  if (!existsSync(pkgPath)) throw new Error(`provider package ${dir}: no package.json`);
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { name?: unknown; version?: unknown };
  if (typeof pkg.name !== 'string' || typeof pkg.version !== 'string')
    throw new Error(`${pkgPath}: no name or version`);
  const readmePath = join(dir, 'README.md');
  const onnxruntimeVersion = existsSync(readmePath)
    ? onnxruntimeVersionInReadme(readFileSync(readmePath, 'utf8'))
    : undefined;
  if (!onnxruntimeVersion)
    throw new Error(
      `${readmePath}: no "ONNX Runtime: [x.y.z]" line; cannot tell which onnxruntime release ${pkg.name}@${pkg.version} was built for`,
    );
  for (const file of CUDA_PROVIDER_FILES) {
    if (!existsSync(join(dir, PROVIDER_LIB_DIR, file)))
      throw new Error(`provider package ${pkg.name}@${pkg.version}: ${join(PROVIDER_LIB_DIR, file)} is missing`);
  }
  const cudaLib = join(dir, PROVIDER_LIB_DIR, 'libonnxruntime_providers_cuda.so');
  if (readFileSync(cudaLib).indexOf(Buffer.from(`\0${onnxruntimeVersion}\0`)) < 0) {
    throw new Error(
      `${cudaLib}: the version string ${onnxruntimeVersion} that ${readmePath} names is not in the library; cannot tell which onnxruntime release it was built for`,
    );
  }
  return { dir, name: pkg.name, version: pkg.version, onnxruntimeVersion };
}

/** The package.json files that pin onnxruntime-node, for the refusal message. */
const PINNING_PACKAGES =
  'tools/runtime and plugins/{eval,f-distill,multi-student,student-train,teacher-infer}/package.json';

/** Refuses provider libraries built for another onnxruntime release than the installed onnxruntime-node. */
export function checkProviderMatch(
  provider: Pick<ProviderPackage, 'name' | 'version' | 'onnxruntimeVersion'>,
  install: OnnxruntimeNodeInstall,
): void {
  if (sameRelease(provider.onnxruntimeVersion, install.version)) return;
  throw new Error(
    `GPU set-up refused: onnxruntime-node is ${install.version} but ${provider.name}@${provider.version} ships CUDA provider ` +
      `libraries built for onnxruntime ${provider.onnxruntimeVersion}, and provider libraries load only into the onnxruntime ` +
      `release they were built for. Either pin "onnxruntime-node": "${provider.onnxruntimeVersion}" in ${PINNING_PACKAGES} ` +
      `and run npm install, or pass --package NAME@VERSION of a provider package built for onnxruntime ${install.version}. ` +
      `Nothing was installed.`,
  );
}

/**
 * Copies the provider libraries next to the binding, after checkProviderMatch. Each file is
 * written under a temporary name and renamed; the marker (GPU_PROVIDER_MARKER) goes last, so an
 * interrupted set-up leaves either no marker or complete libraries. Returns the files written.
 */
export function installProviderLibraries(provider: ProviderPackage, install: OnnxruntimeNodeInstall): string[] {
  checkProviderMatch(provider, install);
  if (!existsSync(join(install.binDir, 'onnxruntime_binding.node')))
    throw new Error(
      `${install.binDir}: no onnxruntime_binding.node; is onnxruntime-node installed for ${process.platform}/${process.arch}?`,
    );
  const written: string[] = [];
  const put = (target: string, write: (tmp: string) => void) => {
    const tmp = `${target}.tmp-${process.pid}`;
    try {
      write(tmp);
      renameSync(tmp, target);
    } finally {
      rmSync(tmp, { force: true });
    }
    written.push(target);
  };
  for (const file of CUDA_PROVIDER_FILES)
    put(join(install.binDir, file), (tmp) => copyFileSync(join(provider.dir, PROVIDER_LIB_DIR, file), tmp));
  const marker: GpuProviderMarker = {
    package: provider.name,
    packageVersion: provider.version,
    onnxruntimeVersion: provider.onnxruntimeVersion,
  };
  put(join(install.binDir, GPU_PROVIDER_MARKER), (tmp) => writeFileSync(tmp, `${JSON.stringify(marker, null, 2)}\n`));
  return written;
}
