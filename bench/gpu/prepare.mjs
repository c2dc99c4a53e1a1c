// Prepares what the GPU device check (bench/gpu/run.sh) carries to a machine that may have no
// Node, no npm and no network, into the ignored folder .gpu-carry/ (see README "GPU"):
//
//   .gpu-carry/base/app.tar.xz   the packages the check imports: compiled @distillery/core and
//                                teacher-infer, apache-arrow, onnx-proto (+ their dependencies),
//                                onnxruntime-node of the provider's release (linux x64 binding
//                                only) with libonnxruntime_providers_shared.so installed by the
//                                project's gpu-setup code
//   .gpu-carry/cuda/libonnxruntime_providers_cuda.so.xz
//                                the CUDA provider library, with the GPU code of every
//                                architecture but the target's zeroed (see pruneFatbin) so that it
//                                compresses to fit the 64 MiB a device call carries
//   .gpu-carry/node/node.xz      this machine's node binary (for a device without Node)
//   .gpu-carry/cache/            downloads and staging (not carried)
//
//   node bench/gpu/prepare.mjs [--archs 90] [--provider NAME@VERSION]
//
// Downloads with `npm pack` (npm registry only). Prints the size of each carried folder.
import { execFileSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  GPU_PROVIDER_PACKAGE,
  GPU_PROVIDER_PACKAGE_VERSION,
  installProviderLibraries,
  readProviderPackage,
} from '@distillery/runtime/onnx/gpu-setup';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CARRY = join(ROOT, '.gpu-carry');
const CACHE = join(CARRY, 'cache');
const { values: args } = parseArgs({
  options: {
    archs: { type: 'string', default: '90' },
    provider: { type: 'string', default: `${GPU_PROVIDER_PACKAGE}@${GPU_PROVIDER_PACKAGE_VERSION}` },
  },
});
const KEEP_ARCHS = new Set(args.archs.split(',').map(Number));

const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const duBytes = (p) =>
  statSync(p).isDirectory() ? readdirSync(p).reduce((s, f) => s + duBytes(join(p, f)), 0) : statSync(p).size;

/** `npm pack spec` into CACHE once, unpacked into CACHE/<dirName>/package. */
function fetchPackage(spec, dirName) {
  const dir = join(CACHE, dirName);
  if (existsSync(join(dir, 'package', 'package.json'))) return join(dir, 'package');
  mkdirSync(dir, { recursive: true });
  console.log(`npm pack ${spec}`);
  const file = execFileSync('npm', ['pack', spec, '--pack-destination', dir, '--silent'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
    .trim()
    .split('\n')
    .at(-1);
  execFileSync('tar', ['-xzf', join(dir, file), '-C', dir]);
  rmSync(join(dir, file));
  return join(dir, 'package');
}

/** Copies a package folder without type declarations, source maps, TypeScript sources or nested node_modules. */
function copyPackage(from, to, keep = () => true) {
  cpSync(from, to, {
    recursive: true,
    dereference: true,
    filter: (src) => {
      const rel = relative(from, src);
      if (rel === '') return true;
      if (rel.split('/').includes('node_modules')) return false;
      if (/\.(d\.ts|d\.mts|d\.cts|map|ts|md)$/.test(src) && !/LICENSE/i.test(src)) return false;
      return keep(rel);
    },
  });
}

/** Package name of a bare import specifier ('@a/b/c' -> '@a/b', 'x/y' -> 'x'). */
const packageOf = (spec) =>
  spec
    .split('/')
    .slice(0, spec.startsWith('@') ? 2 : 1)
    .join('/');

/** The workspace packages copied to the machine: name -> folder under ROOT. */
const WORKSPACE = {
  '@distillery/core': 'tools/core',
  '@distillery/runtime': 'tools/runtime',
  '@distillery/plugin-teacher-infer': 'plugins/teacher-infer',
};

/** The file a `@distillery/...` import names, through its package's exports map. */
function workspaceEntry(spec) {
  const name = packageOf(spec);
  const dir = join(ROOT, WORKSPACE[name] ?? `missing-workspace-package-${name}`);
  const sub = spec === name ? '.' : `.${spec.slice(name.length)}`;
  const target = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).exports?.[sub];
  if (!target) throw new Error(`${spec}: not an entry point of ${name}`);
  return join(dir, target);
}

/** Third-party packages reached from `entries` through relative imports of compiled JS (our own dist). */
function importedPackages(entries) {
  const seen = new Set();
  const packages = new Set();
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.pop();
    if (seen.has(file) || !existsSync(file)) continue;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from\s*|import\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)) {
      const spec = m[1];
      if (spec.startsWith('node:')) continue;
      if (spec.startsWith('.')) queue.push(join(dirname(file), spec));
      else if (spec.startsWith('@distillery/')) queue.push(workspaceEntry(spec));
      else packages.add(packageOf(spec));
    }
  }
  return packages;
}

/** The folder of package `name` as Node resolves it from `fromDir` (walking up node_modules folders). */
function packageDir(name, fromDir) {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dir === dirname(dir)) throw new Error(`package ${name} not found from ${fromDir}; run npm ci first`);
  }
}

/**
 * Zeroes the GPU code in a CUDA library's .nv_fatbin section for every architecture not in
 * `keep`, in place. The fat binary's containers and entry headers stay as they are (the CUDA
 * runtime picks the entry for its device's architecture by header), only other architectures'
 * payloads become zeros, which compress to nothing. Returns the bytes zeroed and kept.
 */
function pruneFatbin(buf, keep) {
  const shoff = Number(buf.readBigUInt64LE(0x28));
  const shentsize = buf.readUInt16LE(0x3a),
    shnum = buf.readUInt16LE(0x3c),
    shstrndx = buf.readUInt16LE(0x3e);
  const section = (i) => ({
    name: buf.readUInt32LE(shoff + i * shentsize),
    offset: Number(buf.readBigUInt64LE(shoff + i * shentsize + 24)),
    size: Number(buf.readBigUInt64LE(shoff + i * shentsize + 32)),
  });
  const strtab = section(shstrndx);
  let fatbin;
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const end = buf.indexOf(0, strtab.offset + s.name);
    if (buf.toString('latin1', strtab.offset + s.name, end) === '.nv_fatbin') fatbin = s;
  }
  if (!fatbin) throw new Error('no .nv_fatbin section');
  let zeroed = 0,
    kept = 0;
  for (let p = fatbin.offset; p + 16 <= fatbin.offset + fatbin.size; ) {
    if (buf.readUInt32LE(p) !== 0xba55ed50) {
      p += 8;
      continue;
    }
    const headerSize = buf.readUInt16LE(p + 6);
    const end = p + headerSize + Number(buf.readBigUInt64LE(p + 8));
    for (let q = p + headerSize; q < end; ) {
      const kind = buf.readUInt16LE(q),
        entryHeader = buf.readUInt32LE(q + 4),
        payload = Number(buf.readBigUInt64LE(q + 8)),
        arch = buf.readUInt32LE(q + 28);
      // kind 2 = machine code (ELF); PTX (kind 1) is kept for the driver to compile.
      if (kind === 2 && !keep.has(arch)) {
        buf.fill(0, q + entryHeader, q + entryHeader + payload);
        zeroed += payload;
      } else kept += payload;
      q += entryHeader + payload;
    }
    p = end;
  }
  if (kept === 0) throw new Error(`no GPU code for architectures ${[...keep].join(',')} in the library`);
  return { zeroed, kept };
}

/** xz-compresses `src` to `dest` (atomic: a temporary name, then renamed). */
function xz(src, dest, extra = []) {
  mkdirSync(dirname(dest), { recursive: true });
  const tmp = `${dest}.tmp`;
  execFileSync('sh', ['-c', `xz -6 -T2 ${extra.join(' ')} -c "$1" > "$2"`, 'xz', src, tmp]);
  renameSync(tmp, dest);
}

mkdirSync(CACHE, { recursive: true });

// 1. The provider package, and the onnxruntime release it was built for.
const [providerName, providerVersion] = [
  args.provider.slice(0, args.provider.lastIndexOf('@')),
  args.provider.slice(args.provider.lastIndexOf('@') + 1),
];
const provider = readProviderPackage(fetchPackage(`${providerName}@${providerVersion}`, `provider-${providerVersion}`));
const release = provider.onnxruntimeVersion;
console.log(`${provider.name}@${provider.version}: CUDA provider for onnxruntime ${release}`);

// 2. The app tree: node_modules as the check imports them.
const stage = join(CACHE, 'stage');
rmSync(stage, { recursive: true, force: true });
const app = join(stage, 'app');
const nm = join(app, 'node_modules');
const ortNode = fetchPackage(`onnxruntime-node@${release}`, `onnxruntime-node-${release}`);
const ortCommon = fetchPackage(`onnxruntime-common@${release}`, `onnxruntime-common-${release}`);
/** Of onnxruntime-node's files, the JS and the linux x64 binding (not the install scripts, sources or other platforms). */
const linuxX64Only = (rel) => {
  const parts = rel.split('/');
  if (parts[0] === 'script' || parts[0] === 'lib') return false;
  if (parts[0] !== 'bin') return true;
  return (parts[2] === undefined || parts[2] === 'linux') && (parts[3] === undefined || parts[3] === 'x64');
};
copyPackage(ortNode, join(nm, 'onnxruntime-node'), linuxX64Only);
copyPackage(ortCommon, join(nm, 'onnxruntime-common'), (rel) => !/^lib(\/|$)/.test(rel));
const binDir = join(
  nm,
  'onnxruntime-node',
  'bin',
  `napi-v${JSON.parse(readFileSync(join(ortNode, 'package.json'), 'utf8')).binary.napi_versions[0]}`,
  'linux',
  'x64',
);
installProviderLibraries(provider, { version: release, binDir });
for (const [pkg, dir] of Object.entries(WORKSPACE)) {
  mkdirSync(join(nm, pkg), { recursive: true });
  cpSync(join(ROOT, dir, 'package.json'), join(nm, pkg, 'package.json'));
  copyPackage(join(ROOT, dir, 'dist', 'src'), join(nm, pkg, 'dist', 'src'));
}
const entries = [
  workspaceEntry('@distillery/plugin-teacher-infer'),
  join(ROOT, 'tools/runtime/dist/src/onnx/session-thread-worker.js'),
  workspaceEntry('@distillery/runtime/onnx'),
  workspaceEntry('@distillery/runtime/shards'),
  workspaceEntry('@distillery/runtime/rng'),
];
const queue = [...importedPackages(entries)]
  .filter((p) => !p.startsWith('onnxruntime-') && !p.startsWith('@distillery/'))
  .map((name) => ({ name, from: join(ROOT, 'tools/core') }));
const copied = new Set();
while (queue.length > 0) {
  const { name, from } = queue.shift();
  const dir = packageDir(name, from);
  const rel = relative(ROOT, dir);
  if (copied.has(rel)) continue;
  copied.add(rel);
  copyPackage(dir, join(app, rel));
  const deps = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).dependencies ?? {};
  for (const dep of Object.keys(deps)) if (!dep.startsWith('@types/')) queue.push({ name: dep, from: dir });
}
console.log(`packages: ${[...copied].join(', ')}`);

// 3. The CUDA provider library goes separately, pruned to the target architectures.
const cudaLib = join(binDir, 'libonnxruntime_providers_cuda.so');
const lib = readFileSync(cudaLib);
rmSync(cudaLib);
const { zeroed, kept } = pruneFatbin(lib, KEEP_ARCHS);
console.log(
  `libonnxruntime_providers_cuda.so: ${mib(lib.length)}, GPU code kept for sm_${[...KEEP_ARCHS].join(',sm_')} ${mib(kept)}, zeroed ${mib(zeroed)}`,
);
const pruned = join(CACHE, 'libonnxruntime_providers_cuda.so');
writeFileSync(pruned, lib);
writeFileSync(join(binDir, 'cuda-archs.txt'), `${[...KEEP_ARCHS].join(',')}\n`);
rmSync(join(CARRY, 'cuda'), { recursive: true, force: true });
xz(pruned, join(CARRY, 'cuda', 'libonnxruntime_providers_cuda.so.xz'), ['-9']);
rmSync(pruned);

// 4. The app tree and node.
rmSync(join(CARRY, 'base'), { recursive: true, force: true });
mkdirSync(join(CARRY, 'base'), { recursive: true });
const tarball = join(CARRY, 'base', 'app.tar');
execFileSync('tar', ['-cf', tarball, '-C', stage, 'app']);
xz(tarball, `${tarball}.xz`);
rmSync(tarball);
rmSync(stage, { recursive: true, force: true });
const node = execFileSync('sh', ['-c', 'command -v node'], { encoding: 'utf8' }).trim();
const nodeXz = join(CARRY, 'node', 'node.xz');
const nodeStamp = join(CARRY, 'node', 'version.txt');
if (!existsSync(nodeXz) || !existsSync(nodeStamp) || readFileSync(nodeStamp, 'utf8').trim() !== process.version) {
  xz(node, nodeXz);
  writeFileSync(nodeStamp, `${process.version}\n`);
}

const sizes = Object.fromEntries(['base', 'cuda', 'node'].map((d) => [d, duBytes(join(CARRY, d))]));
for (const [d, b] of Object.entries(sizes)) console.log(`.gpu-carry/${d}: ${mib(b)}`);
console.log(
  `together ${mib(sizes.base + sizes.cuda + sizes.node)}; a device call carries at most 64 MiB with the working tree (see README "GPU")`,
);
