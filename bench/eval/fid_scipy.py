#!/usr/bin/env python3
"""FID baseline: pytorch-fid's formula with numpy + scipy.linalg.sqrtm (pyenv python3).

Usage:
  python3 fid_scipy.py generate A.npy B.npy N D SEED   writes two float32 feature matrices
  python3 fid_scipy.py fid A.npy B.npy                  prints {"fid", "seconds"} as JSON

The FID part is calculate_activation_statistics' mean / np.cov(rowvar=False) followed by
calculate_frechet_distance (sqrtm of the product, eps*I retry, real part), timed from loading
the files to the result, as the JS side is.
"""
import json
import sys
import time

import numpy as np
from scipy import linalg


def frechet(mu1, sigma1, mu2, sigma2, eps=1e-6):
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError('Imaginary component {}'.format(np.max(np.abs(covmean.imag))))
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def stats(path):
    act = np.load(path).astype(np.float64)
    return np.mean(act, axis=0), np.cov(act, rowvar=False)


def main():
    if sys.argv[1] == 'generate':
        a, b, n, d, seed = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
        rng = np.random.default_rng(seed)
        k = min(256, d)
        mix = rng.standard_normal((k, d)).astype(np.float32) / np.sqrt(k)
        for path, shift in ((a, 0.0), (b, 0.05)):
            z = rng.standard_normal((n, d), dtype=np.float32)
            x = np.abs(z * np.linspace(0.2, 1.0, d, dtype=np.float32) + z[:, :k] @ mix + shift)
            np.save(path, x.astype(np.float32))
        return
    t0 = time.perf_counter()
    mu1, s1 = stats(sys.argv[2])
    mu2, s2 = stats(sys.argv[3])
    t1 = time.perf_counter()
    fid = float(frechet(mu1, s1, mu2, s2))
    t2 = time.perf_counter()
    print(json.dumps({'fid': fid, 'seconds': t2 - t0, 'stats_seconds': t1 - t0, 'distance_seconds': t2 - t1}))


if __name__ == '__main__':
    main()
