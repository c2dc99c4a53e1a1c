"""PyTorch baseline for bench/student-train: ms per training step of an MLP
784-1024-1024-1000, batch 256, Adam, softmax cross-entropy. Prints a JSON line when ready, then
answers "steps N" lines (one JSON line each) until "quit" or end of input.
Usage: /usr/bin/python3 torch_mlp.py [--threads 2] [--warmup 3]"""
import argparse, os, sys
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from torch_side import serve  # noqa: E402

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
# Driven over stdin by bench/student-train/run.mjs so the two sides interleave (bench/lib/torch_side.py).
serve(step, {'version': torch.__version__, 'threads': torch.get_num_threads(), 'blas': blas})
