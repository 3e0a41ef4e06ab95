#!/usr/bin/env bash
# The GPU checks in one prepared run (under 8 minutes on one H100):
#   1. the CUDA tests (pytest -m cuda: training on the GPU, mixed precision, torch.compile, fused
#      optimizers, recurrent layers, the word2vec mini-batch path);
#   2. the moonshot: --recipe fast to 0.94 Fashion-MNIST test accuracy (goal: under 10 s, 5x a
#      plain loop), in its own file, $OUT/gpu_fast.md, so a later timeout cannot lose it;
#   3. the GPU benchmarks against their peers in the same run: LeNet-5 and ResNet-18 on
#      Fashion-MNIST, time to accuracy vs a plain PyTorch loop on the GPU; the optimizer step vs
#      torch's fused kernels; LSTM/GRU vs cuDNN; word2vec words/s vs gensim on the CPU.
# The rest goes to one file: $OUT/gpu_results.md when $OUT is set, else benchmarks/gpu_results.md.
#
#     bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
results="${OUT:-benchmarks}/gpu_results.md"
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"  # works without installing
start=$(date +%s)
{
    echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
    python -c "import sys, torch; print('python', sys.version.split()[0], '| torch',
torch.__version__, '| CUDA', torch.version.cuda, '|', torch.cuda.get_device_name(0))" 2>&1
    echo '```'
    echo
    echo "## CUDA tests: python -m pytest -m cuda tests"
    echo
    echo '```'
} > "$results"
timeout 120 python -m pytest -m cuda -q -p no:cacheprovider tests 2>&1 | tail -25 >> "$results"
echo '```' >> "$results"
echo >> "$results"
timeout 150 python -m benchmarks --device cuda --only fast_recipe \
    --out "${OUT:-benchmarks}/gpu_fast.md" 2>&1 | tail -8
timeout 210 python -m benchmarks --device cuda --quick \
    --only fashion_mnist optimizer_step rnn_layers word2vec --out "$results" 2>&1 | tail -40
echo "gpu_check: $(( $(date +%s) - start )) s; results in $results"
