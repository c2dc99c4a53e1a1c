"""PyTorch baseline for bench/student-train: ms per training step of an MLP
784-1024-1024-1000, batch 256, Adam, softmax cross-entropy. Prints a JSON line when ready, then
answers "steps N" lines (one JSON line each) until "quit" or end of input.
Usage: /usr/bin/python3 torch_mlp.py [--threads 2] [--warmup 3]"""
import argparse, json, sys, time
import torch

ap = argparse.ArgumentParser()
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--warmup', type=int, default=3)
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Linear(784, 1024), torch.nn.ReLU(),
    torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
    torch.nn.Linear(1024, 1000))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.randn(256, 784)
y = torch.randint(0, 1000, (256,))
loss_fn = torch.nn.CrossEntropyLoss()

def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()

for _ in range(args.warmup):
    step()
blas = torch.__config__.show().split('BLAS_INFO=')[1].split(',')[0]
print(json.dumps({'ready': True, 'version': torch.__version__, 'threads': torch.get_num_threads(), 'blas': blas}), flush=True)
# Driven over stdin by bench/student-train/run.mjs so the two sides interleave: "steps N" -> ms/step.
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(' ')
    if cmd == 'steps':
        n = int(arg); t0 = time.perf_counter()
        for _ in range(n):
            loss = step()
        print(json.dumps({'ms': (time.perf_counter() - t0) * 1000 / n, 'loss': loss}), flush=True)
    elif cmd == 'quit':
        break
