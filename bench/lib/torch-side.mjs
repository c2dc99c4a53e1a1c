// The PyTorch side of an interleaved benchmark: a Python child process (Debian's /usr/bin/python3)
// that answers one JSON line per command line, so the two sides can alternate round by round
// (A B A B ...) and machine drift hits both. The script prints one JSON line when ready.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/** Starts `script` with `args`; threads sets OMP/OpenBLAS thread counts. */
export async function startTorch(script, args, threads) {
  const py = spawn('/usr/bin/python3', [script, ...args], {
    env: { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: py.stdout })[Symbol.asyncIterator]();
  async function ask(command) {
    if (command) py.stdin.write(`${command}\n`);
    const { value, done } = await lines.next();
    if (done) throw new Error(`pytorch baseline ${script} exited (is python3-torch installed?)`);
    return JSON.parse(value);
  }
  const hello = await ask();
  return { hello, ask, close: () => py.stdin.end() };
}

/**
 * Alternates `rounds` rounds of ours (a function returning ms/step) and theirs (`steps N` on the
 * torch side), prints each round, and returns the median ratio ours / theirs.
 */
export async function interleave(rounds, ours, torch, steps) {
  const a = [];
  const b = [];
  const ratios = [];
  for (let r = 0; r < rounds; r++) {
    const mine = ours();
    const theirs = (await torch.ask(`steps ${steps}`)).ms;
    a.push(mine);
    b.push(theirs);
    ratios.push(mine / theirs);
    console.log(
      `round ${r + 1}: tfjs ${mine.toFixed(1)} ms/step, pytorch ${theirs.toFixed(1)} ms/step, ratio ${(mine / theirs).toFixed(2)}`,
    );
  }
  return { ours: median(a), theirs: median(b), ratio: median(ratios) };
}

export function median(values) {
  const s = [...values].sort((p, q) => p - q);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
