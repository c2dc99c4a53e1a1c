#!/usr/bin/env bash
# Prepares .gpu-carry/ for the GPU device check (bench/gpu/run.sh): run here, where npm and the
# npm registry are, after `npm ci`. Details in bench/gpu/prepare.mjs and README "GPU".
#   bash bench/gpu/prepare.sh [--archs 90] [--provider NAME@VERSION]
set -euo pipefail
cd "$(dirname "$0")/../.."
npx tsc -b
node bench/gpu/prepare.mjs "$@"
