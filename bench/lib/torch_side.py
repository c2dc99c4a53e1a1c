"""The Python half of bench/lib/torch-side.mjs: announces itself with one JSON line, then answers
one JSON line per command read from stdin, so the JavaScript side can interleave its rounds.
"steps N" -> {"ms": per-step ms over N calls of step(), "loss": the last}; other commands go to
`extra` (name -> function of the argument text); "quit" or end of input stops."""
import json, sys, time


def serve(step, hello, extra=None):
    print(json.dumps({'ready': True, **hello}), flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(' ')
        if cmd == 'steps':
            n = int(arg); t0 = time.perf_counter()
            for _ in range(n):
                loss = step()
            print(json.dumps({'ms': (time.perf_counter() - t0) * 1000 / n, 'loss': loss}), flush=True)
        elif cmd == 'quit':
            break
        elif extra and cmd in extra:
            print(json.dumps(extra[cmd](arg)), flush=True)
        else:
            print(json.dumps({'error': f'unknown command {cmd!r}'}), flush=True)
