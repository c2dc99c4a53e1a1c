import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { ProgressView } from '../src/runner/progress.js';

/** A non-TTY stream that keeps what is written. */
function capture(): { stream: NodeJS.WriteStream; lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    stream: { isTTY: false, write: (s: string) => (lines.push(s.trimEnd()), true) } as unknown as NodeJS.WriteStream,
  };
}

test('progress: rate and ETA from the reported counts; a new unit (a new phase) restarts the rate', () => {
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
  try {
    const { stream, lines } = capture();
    const view = new ProgressView(stream, false, 0);
    view.started('s', '(test)');
    view.progress('s', 0, 400_000, 'rows');
    mock.timers.tick(2000);
    view.progress('s', 400_000, 400_000, 'rows'); // 200,000 rows/s
    assert.match(lines.at(-1)!, /400000\/400000 rows \(100%\)\s+200000 rows\/s/);
    mock.timers.tick(100);
    view.progress('s', 24, 600, 'steps');
    // Not "200000 steps/s, ETA 3ms": no rate until the new phase has its own window.
    assert.match(lines.at(-1)!, /^\s*s\s+24\/600 steps \(4%\)\s+\[/);
    mock.timers.tick(2000);
    view.progress('s', 44, 600, 'steps'); // 10 steps/s over the new window
    assert.match(lines.at(-1)!, /44\/600 steps \(7%\)\s+10\.0 steps\/s\s+ETA 55\.6s/);
    view.close();
  } finally {
    mock.timers.reset();
  }
});
