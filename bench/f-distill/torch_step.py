"""PyTorch CPU baseline for bench/f-distill/run.mjs: the same EDM denoiser MLP training step
(784 + 13 time-embedding + 10 one-hot inputs, hidden [512, 512, 512], batch 128, Adam).
Run with Debian's /usr/bin/python3 (torch 1.13). Prints 'steps/s <value>'."""
import argparse, math, time
import torch

p = argparse.ArgumentParser()
p.add_argument('--threads', type=int, default=1)
p.add_argument('--steps', type=int, default=30)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
D, C, B, sd = 784, 10, 128, 0.5
freqs = torch.tensor([1., 2., 4., 8., 16., 32.])
net = torch.nn.Sequential(torch.nn.Linear(D + 13 + C, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
                          torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, D))
opt = torch.optim.Adam(net.parameters(), lr=1e-4)
x0, noise = torch.randn(B, D), torch.randn(B, D)
sigma = torch.exp(-1.2 + 1.2 * torch.sin(torch.arange(B, dtype=torch.float32))).unsqueeze(1)
onehot = torch.nn.functional.one_hot(torch.arange(B) % C, C).float()

def step():
    v = sigma ** 2 + sd ** 2
    c_in, c_skip, c_out, c_noise = 1 / v.sqrt(), sd ** 2 / v, sigma * sd / v.sqrt(), sigma.log() / 4
    xt = x0 + sigma * noise
    h = torch.cat([xt * c_in, c_noise, torch.sin(c_noise * freqs), torch.cos(c_noise * freqs), onehot], 1)
    d = c_skip * xt + c_out * net(h)
    loss = (((d - x0) / c_out) ** 2).mean()
    opt.zero_grad(); loss.backward(); opt.step()

for _ in range(3): step()
t = time.perf_counter()
for _ in range(a.steps): step()
print(f'steps/s {a.steps / (time.perf_counter() - t):.3f}')
