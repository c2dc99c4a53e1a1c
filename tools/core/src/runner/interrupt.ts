/**
 * Ctrl-C and SIGTERM for a run. The first signal cancels running stages (SIGTERM to their
 * processes, SIGKILL after a grace period); a second kills them at once. The listeners stay
 * installed for the whole run: with a one-shot listener, execa's signal-exit would re-raise the
 * signal, kill the runner, and leave stage processes running without it.
 */
export interface Interrupt {
  /** Aborted by the first signal. */
  signal: AbortSignal;
  /** Aborted by the second. */
  force: AbortSignal;
  dispose(): void;
}

export function watchInterrupts(say: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Interrupt {
  const first = new AbortController();
  const second = new AbortController();
  const onSignal = (name: NodeJS.Signals): void => {
    if (!first.signal.aborted) {
      say(`${name}: stopping running stages (send again to kill them at once)`);
      first.abort();
    } else {
      second.abort();
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: first.signal,
    force: second.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
