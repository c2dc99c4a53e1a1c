/**
 * Progress display. On a TTY: one live line per running stage (stage, done/total, rate, ETA)
 * redrawn in place; otherwise plain log lines, throttled. Everything goes to stderr so that
 * `--json` output on stdout stays clean.
 */

interface Running {
  startedAt: number;
  done: number;
  total?: number;
  unit: string;
  /** Where the rate window starts. */
  windowAt: number;
  windowDone: number;
  rate: number;
  lastPrinted: number;
}

export interface ProgressSink {
  started(id: string, detail: string): void;
  progress(id: string, done: number, total?: number, unit?: string): void;
  finished(id: string, line: string): void;
  message(line: string): void;
  close(): void;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return m < 60
    ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`
    : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export class ProgressView implements ProgressSink {
  private readonly running = new Map<string, Running>();
  private timer: NodeJS.Timeout | undefined;
  private readonly live: boolean;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly quiet = false,
    /** Seconds between plain progress lines per stage when not on a TTY. */
    private readonly plainInterval = 10,
  ) {
    this.live = Boolean(stream.isTTY) && !quiet && process.env.CI !== 'true';
    if (this.live) {
      // Loaded lazily: a fully cached run never draws, and should not pay for the import.
      void import('log-update').then(({ createLogUpdate }) => {
        this.render = createLogUpdate(stream, { showCursor: true });
      });
      this.timer = setInterval(() => this.draw(), 200);
      this.timer.unref();
    }
  }

  private render: ((text: string) => void) & { clear?: () => void; done?: () => void } = () => {};

  started(id: string, detail: string): void {
    const now = Date.now();
    this.running.set(id, {
      startedAt: now,
      done: 0,
      unit: '',
      windowAt: now,
      windowDone: 0,
      rate: 0,
      lastPrinted: now,
    });
    this.print(`▶ ${id} ${detail}`);
  }

  progress(id: string, done: number, total?: number, unit = ''): void {
    const state = this.running.get(id);
    if (!state) return;
    const now = Date.now();
    if (done < state.windowDone || unit !== state.unit) {
      // A new phase (count restarted or another unit, e.g. a data pass before training steps).
      state.windowAt = now;
      state.windowDone = done;
      if (unit !== state.unit) state.rate = 0;
    }
    state.done = done;
    state.total = total;
    state.unit = unit;
    const elapsed = (now - state.windowAt) / 1000;
    if (elapsed >= 1) {
      const instant = (done - state.windowDone) / elapsed;
      state.rate = state.rate === 0 ? instant : 0.7 * state.rate + 0.3 * instant;
      state.windowAt = now;
      state.windowDone = done;
    }
    if (!this.live && !this.quiet && now - state.lastPrinted >= this.plainInterval * 1000) {
      state.lastPrinted = now;
      this.stream.write(`  ${this.describe(id, state)}\n`);
    }
  }

  finished(id: string, line: string): void {
    this.running.delete(id);
    this.print(line);
  }

  message(line: string): void {
    this.print(line);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.live) {
      this.render.clear?.();
      this.render.done?.();
    }
  }

  private print(line: string): void {
    if (this.quiet) return;
    if (this.live) {
      this.render.clear?.();
      this.stream.write(`${line}\n`);
      this.draw();
    } else {
      this.stream.write(`${line}\n`);
    }
  }

  private draw(): void {
    if (!this.live) return;
    this.render([...this.running].map(([id, state]) => `  ${this.describe(id, state)}`).join('\n'));
  }

  private describe(id: string, state: Running): string {
    const elapsed = formatDuration(Date.now() - state.startedAt);
    if (state.done === 0 && state.total === undefined) return `${id}  running ${elapsed}`;
    const unit = state.unit ? ` ${state.unit}` : '';
    const count = state.total !== undefined ? `${state.done}/${state.total}${unit}` : `${state.done}${unit}`;
    const rate =
      state.rate > 0 ? `  ${state.rate >= 100 ? Math.round(state.rate) : state.rate.toPrecision(3)}${unit}/s` : '';
    const eta =
      state.rate > 0 && state.total !== undefined
        ? `  ETA ${formatDuration(((state.total - state.done) / state.rate) * 1000)}`
        : '';
    const pct = state.total ? ` (${((100 * state.done) / state.total).toFixed(0)}%)` : '';
    return `${id}  ${count}${pct}${rate}${eta}  [${elapsed}]`;
  }
}
