"""PyTorch side of bench/student-train-cnn, driven over stdin so the two sides interleave.
Commands (one per line): "steps N" -> {"ms": per-step ms over N Adam steps};
"layers R" -> per-layer forward / input-grad / filter-grad ms (median of R); "quit".
The network: conv 3x3 1->32 (valid), ReLU, maxpool 2, conv 3x3 32->64 (valid), ReLU, maxpool 2,
dense 1600->128, ReLU, dense 128->10; Adam lr 1e-3, softmax cross-entropy, batch 128, NCHW."""
import os, sys, time
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from torch_side import serve  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Flatten(), torch.nn.Linear(1600, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.rand(128, 1, 28, 28)
y = torch.randint(0, 10, (128,))

def step():
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()

# (input shape NCHW, out channels): the two conv layers as the network sees them.
LAYERS = [((128, 1, 28, 28), 32), ((128, 32, 13, 13), 64)]

def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return times[len(times) // 2]

def layers(reps):
    out = []
    for shape, co in LAYERS:
        xi = torch.rand(*shape); w = torch.randn(co, shape[1], 3, 3) * 0.1
        go = torch.randn(shape[0], co, shape[2] - 2, shape[3] - 2)
        fwd = median_ms(lambda: F.conv2d(xi, w), reps)
        dx = median_ms(lambda: torch.nn.grad.conv2d_input(shape, w, go), reps)
        dw = median_ms(lambda: torch.nn.grad.conv2d_weight(xi, w.shape, go), reps)
        out.append({'forward': fwd, 'inputGrad': dx, 'filterGrad': dw})
    return out

for _ in range(3):
    step()
serve(step, {'version': torch.__version__, 'threads': torch.get_num_threads()}, {'layers': lambda arg: {'layers': layers(int(arg))}})
