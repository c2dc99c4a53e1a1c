"""Pretrains two small Fashion-MNIST students in PyTorch and exports them with torch.onnx.export.

Run by the `export-students` exec stage of pipelines/byo-student.yaml (parameters in the JSON file
$DISTILL_PARAMS_FILE, outputs in $DISTILL_OUT): an MLP 784-64-10 (Flatten, Gemm) and a CNN with
batch norm (Conv 1->8 + BatchNormalization + Relu + MaxPool, Conv 8->16 + BatchNormalization +
Relu + MaxPool, x.view(x.size(0), -1), Gemm), each trained for `steps` Adam steps on the first
`samples` training images so that they start from real but unfinished weights. Inputs are
[batch, 1, 28, 28] float32 pixels / 255, the scale student-train feeds.

The CNN is exported with TrainingMode.PRESERVE on a model in eval mode: the exporter then keeps
the BatchNormalization nodes (TrainingMode.EVAL folds them into the convolutions), so
student-train can train them with batch statistics.
"""
import gzip
import json
import os
import sys

import numpy as np
import onnx
import torch
from torch import nn


def read_idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.body(x)


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        h = self.features(x)
        return self.fc(h.view(h.size(0), -1))


def pretrain(model, x, y, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (64,), generator=generator)
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        optimiser.step()
    model.eval()


def main():
    with open(os.environ["DISTILL_PARAMS_FILE"]) as f:
        params = json.load(f)
    out = os.environ["DISTILL_OUT"]
    torch.manual_seed(params["seed"])
    torch.set_num_threads(1)
    n = params["samples"]
    images = read_idx(os.path.join(params["data"], "train-images-idx3-ubyte.gz"), 16)[: n * 784]
    labels = read_idx(os.path.join(params["data"], "train-labels-idx1-ubyte.gz"), 8)[:n]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).reshape(n, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))
    dummy = torch.zeros(1, 1, 28, 28)
    for name, model in (("mlp", Mlp()), ("cnn", Cnn())):
        pretrain(model, x, y, params["steps"], params["seed"])
        path = os.path.join(out, f"{name}.onnx")
        torch.onnx.export(
            model, dummy, path, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=params["opset"], training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
        )
        ops = sorted({node.op_type for node in onnx.load(path).graph.node})
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, ops {ops}")
        if name == "cnn" and "BatchNormalization" not in ops:
            sys.exit("cnn.onnx has no BatchNormalization node (folded into Conv by the exporter)")


if __name__ == "__main__":
    main()
