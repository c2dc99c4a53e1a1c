/**
 * The code a plugin runs, for its code version (part of every cache key): its own package's
 * compiled sources, plus the modules it imports from other workspace packages (`@distillery/*`,
 * found as Node finds them, from the importing file's node_modules folders, then through their
 * package.json `exports`), followed through their own imports. A change to a workspace module a
 * plugin never imports therefore leaves that plugin's stages cached. The result depends only on
 * the files, not on the directory a run starts from.
 *
 * Imports are read from the compiled JavaScript: static `import`/`export ... from`, dynamic
 * `import('...')` with a literal specifier, and `new URL('./x.js', import.meta.url)` (worker
 * files). npm dependencies are not followed (package-lock.json pins them).
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';

const SPECIFIER = [
  /\bfrom\s*['"]([^'"]+)['"]/g,
  /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  /\bimport\s*['"]([^'"]+)['"]/g,
  /\bnew\s+URL\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*,\s*import\.meta\.url\s*\)/g,
];

const SCOPE = '@distillery/';

/** The import specifiers written in a JavaScript module's text. */
export function importSpecifiers(text: string): string[] {
  const found = new Set<string>();
  for (const pattern of SPECIFIER) for (const match of text.matchAll(pattern)) found.add(match[1]!);
  return [...found];
}

/** A workspace package: its directory and the `exports` map of its package.json. */
interface WorkspacePackage {
  dir: string;
  exports: Record<string, string>;
}

/**
 * Code paths of a plugin module: the plugin's package source directory (or the module itself when
 * it is not in a package's src/), then every workspace module outside it that it imports, sorted.
 */
export function pluginCodePaths(modulePath: string): string[] {
  const srcDir = dirname(modulePath);
  const own = srcDir.endsWith(`${sep}src`) ? srcDir : modulePath;
  const ownReal = realpathSync(own);
  const packages = new Map<string, WorkspacePackage | undefined>();
  /** Package `name` as Node resolves it from `fromDir`: the nearest node_modules/<name> upwards. */
  const packageOf = (name: string, fromDir: string): WorkspacePackage | undefined => {
    for (let dir = fromDir; ; dir = dirname(dir)) {
      const candidate = join(dir, 'node_modules', ...name.split('/'));
      if (!packages.has(candidate))
        packages.set(
          candidate,
          existsSync(join(candidate, 'package.json')) ? readWorkspacePackage(candidate) : undefined,
        );
      const found = packages.get(candidate);
      if (found) return found;
      if (dirname(dir) === dir) return undefined;
    }
  };
  const inOwn = (file: string): boolean => file === ownReal || file.startsWith(`${ownReal}${sep}`);
  const found = new Set<string>();
  const queue: Array<{ file: string; followRelative: boolean }> = jsFiles(ownReal).map((file) => ({
    file,
    followRelative: false,
  }));
  while (queue.length > 0) {
    const { file, followRelative } = queue.pop()!;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const spec of importSpecifiers(text)) {
      let target: string | undefined;
      if (spec.startsWith(SCOPE)) target = resolveWorkspaceImport(spec, (name) => packageOf(name, dirname(file)));
      else if (followRelative && spec.startsWith('.')) target = resolve(dirname(file), spec);
      if (!target || !existsSync(target)) continue;
      target = realpathSync(target);
      if (inOwn(target) || found.has(target)) continue;
      found.add(target);
      queue.push({ file: target, followRelative: true });
    }
  }
  return [own, ...[...found].sort()];
}

/** `@distillery/name[/sub]` to a file through the package's exports map; undefined if it has none. */
function resolveWorkspaceImport(
  spec: string,
  packageOf: (name: string) => WorkspacePackage | undefined,
): string | undefined {
  const parts = spec.split('/');
  const name = parts.slice(0, 2).join('/');
  const sub = parts.length > 2 ? `./${parts.slice(2).join('/')}` : '.';
  const pkg = packageOf(name);
  const target = pkg?.exports[sub];
  return pkg && target ? resolve(pkg.dir, target) : undefined;
}

function readWorkspacePackage(dir: string): WorkspacePackage | undefined {
  try {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      exports?: string | Record<string, unknown>;
      main?: string;
    };
    const exports: Record<string, string> = {};
    if (typeof pkg.exports === 'string') {
      exports['.'] = pkg.exports;
    } else if (pkg.exports) {
      for (const [key, value] of Object.entries(pkg.exports)) if (typeof value === 'string') exports[key] = value;
    } else if (pkg.main) {
      exports['.'] = pkg.main;
    }
    return { dir: realpathSync(dir), exports };
  } catch {
    return undefined;
  }
}

/** The .js files of a directory tree, or the file itself. */
function jsFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  const out: string[] = [];
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const full = join(path, entry.name);
    if (entry.isDirectory()) out.push(...jsFiles(full));
    else if (entry.name.endsWith('.js')) out.push(full);
  }
  return out;
}
