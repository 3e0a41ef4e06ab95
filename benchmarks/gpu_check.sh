#!/usr/bin/env bash
# The GPU checks in one prepared run (under 9.5 minutes on one H200), each stage under its own time
# limit and appended to one results file as soon as it ends, so a stage that overruns loses only
# itself:
#   1. the moonshot: --recipe fast to 0.94 Fashion-MNIST test accuracy (goal: under 10 s, and 5x
#      a plain loop);
#   2. the CUDA tests (pytest -m cuda: training on the GPU, mixed precision, torch.compile, fused
#      optimizers, recurrent layers, word2vec's Triton kernels and mini-batch path, NCCL);
#   3. the other GPU benchmarks against their peers in the same run: LeNet-5 and ResNet-18 on
#      Fashion-MNIST, time to accuracy vs a plain PyTorch loop on the GPU; the optimizer step vs
#      torch's fused kernels; LSTM/GRU vs cuDNN; word2vec words/s vs gensim on the CPU;
#   4. what CUDA graph replay buys (the notes' cells, word2vec's mini-batch path), against
#      graphs off;
#   5. where the fast recipe's seconds go (its first steps, a profiled epoch, variants' epochs),
#      and the recipe to 0.94 with the network replayed from CUDA graphs, in its 10 epochs and
#      in 8 (which reached 0.9406-0.9407 on the CPU);
#   6. the README tour's slow commands, timed as written (its table's "one GPU" column), in
#      whatever time is left of 9.5 minutes.
# Results: $OUT/gpu_results.md when $OUT is set, else benchmarks/gpu_results.md; the benchmarks'
# progress lines go to gpu_log.txt beside it.
#
#     bash benchmarks/gpu_check.sh
#
# It needs Fashion-MNIST, the GCIDE text, gensim and Optuna; on a machine without network,
# benchmarks/offline_bundle.sh carries them in. On the lent H200, after packing here once
# (`echo /.bundle/ >> .git/info/exclude; bash benchmarks/offline_bundle.sh pack .bundle`), one
# device call carrying .bundle (45.6 MB, under its 64 MiB) with a 600 s limit:
#
#     bash benchmarks/offline_bundle.sh unpack .bundle && PYTHONPATH=/tmp/site bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
folder="${OUT:-benchmarks}"
results="$folder/gpu_results.md"
log="$folder/gpu_log.txt"
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"  # works without installing
export PYTHONUNBUFFERED=1
start=$(date +%s)

stage() {  # TITLE LIMIT COMMAND...: run COMMAND for at most LIMIT s, its output into $results
    local title=$1 limit=$2
    shift 2
    printf '## %s\n\n`%s`\n\n```\n' "$title" "$*" >> "$results"
    timeout "$limit" "$@" >> "$results" 2>> "$log"
    local status=$?
    [ "$status" -eq 124 ] && echo "(stopped at its limit of $limit s)" >> "$results"
    printf '```\n\n' >> "$results"
    echo "gpu_check: $title: exit status $status at $(( $(date +%s) - start )) s" | tee -a "$log"
}

{
    echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
    python -c "import sys, torch; print('python', sys.version.split()[0], '| torch',
torch.__version__, '| CUDA', torch.version.cuda, '|', torch.cuda.get_device_name(0))" 2>&1
    echo '```'
    echo
} > "$results"
: > "$log"
bench="python -m benchmarks --device cuda --quick --out -"
stage "The moonshot: --recipe fast to 0.94" 150 $bench --only fast_recipe
stage "CUDA tests" 120 python -m pytest -m cuda -q -p no:cacheprovider tests
stage "Fashion-MNIST: LeNet-5 and ResNet-18 vs a plain loop" 110 $bench --only fashion_mnist
stage "Optimizer step and recurrent layers" 50 $bench --only optimizer_step rnn_layers
stage "word2vec on the GPU vs gensim on the CPU" 90 $bench --only word2vec
stage "CUDA graphs on and off" 90 python -m benchmarks.cuda_graphs
stage "Where the fast recipe's seconds go" 75 python benchmarks/fast_recipe_profile.py \
    --variants recipe cudnn.benchmark NCHW "batch 1024" "CUDA graphs"  # compile: minutes
stage "--recipe fast with CUDA graphs, to 0.94" 40 \
    python benchmarks/fast_recipe.py --device cuda --skip-peer --cuda-graphs
stage "--recipe fast in 8 epochs with CUDA graphs, to 0.94" 40 \
    python benchmarks/fast_recipe.py --device cuda --skip-peer --cuda-graphs --epochs 8
left=$(( 570 - ($(date +%s) - start) ))
stage "The tour's slow commands" $(( left > 30 ? left : 30 )) python benchmarks/tour_times.py
echo "gpu_check: $(( $(date +%s) - start )) s in all; results in $results"
