"""PyTorch baseline for bench/student-train: ms per training step of an MLP
784-1024-1024-1000, batch 256, Adam, softmax cross-entropy. Prints one JSON line.
Usage: /usr/bin/python3 torch_mlp.py [--threads 2] [--steps 20] [--warmup 3]"""
import argparse, json, time
import torch

ap = argparse.ArgumentParser()
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--steps', type=int, default=20)
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
t0 = time.perf_counter()
for _ in range(args.steps):
    step()
ms = (time.perf_counter() - t0) * 1000 / args.steps
print(json.dumps({'framework': 'pytorch', 'version': torch.__version__, 'threads': torch.get_num_threads(),
                  'blas': torch.__config__.show().split('BLAS_INFO=')[1].split(',')[0], 'msPerStep': ms}))
