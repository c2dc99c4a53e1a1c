#!/usr/bin/env python3
"""Reference points for the 100K-class students (numpy; pyenv python3), on a dump-features.mjs output:
  1. nearest class mean of the raw embeddings (4 train samples per class at the defaults);
  2. weight imprinting at initialisation: class means of a random (He-initialised, seeded) ReLU layer's
     features as cosine classifier rows, i.e. what a student head initialised this way scores at step 0.
Usage: python3 probes/eft-100k/class-mean-probe.py <prefix> [test rows, default 2000]
"""
import sys

import numpy as np

prefix = sys.argv[1]
n_test = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
X = np.fromfile(prefix + '.f32', dtype=np.float32)
y = np.fromfile(prefix + '.lab', dtype=np.int32)
s = np.fromfile(prefix + '.split', dtype=np.uint8)
X = X.reshape(len(y), -1)
train, test = s == 0, np.flatnonzero(s == 2)[:n_test]
C, D = int(y.max()) + 1, X.shape[1]


def class_means(H, labels):
    M = np.zeros((C, H.shape[1]), np.float64)
    np.add.at(M, labels, H)
    return M


def top1_top5(scores, labels):
    best = scores.argmax(1)
    top5 = np.argpartition(-scores, 5, axis=1)[:, :5]
    return (best == labels).mean(), (top5 == labels[:, None]).any(1).mean()


M = class_means(X[train], y[train]) / np.maximum(np.bincount(y[train], minlength=C), 1)[:, None]
M = M.astype(np.float32)
scores = -((M * M).sum(1)[None, :] - 2 * X[test] @ M.T)
print('nearest class mean, raw embeddings: top-1 %.3f, top-5 %.3f' % top1_top5(scores, y[test]))

rng = np.random.default_rng(0)
W = (rng.standard_normal((D, 256)) * np.sqrt(2 / D)).astype(np.float32)
H = np.maximum(X[train] @ W, 0)
Mi = class_means(H, y[train]).astype(np.float32)
Mi /= np.linalg.norm(Mi, axis=1, keepdims=True) + 1e-8
Q = np.maximum(X[test] @ W, 0)
Q /= np.linalg.norm(Q, axis=1, keepdims=True) + 1e-8
print('imprinted rows on random ReLU features (cosine), step 0: top-1 %.3f, top-5 %.3f' % top1_top5(Q @ Mi.T, y[test]))
