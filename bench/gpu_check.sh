#!/usr/bin/env bash
# One command for a GPU machine (issues #30, #31): checks and measures the CuPy engine and the
# CUDA kernels in under 8 minutes, every step under its own `timeout`, its log under OUTDIR.
#
#   bash bench/gpu_check.sh OUTDIR
#
# Needs a Python that already has numpy, scipy, cupy, pytest and hypothesis (torch, jax and
# numba are used when present); the checkout is used in place (PYTHONPATH), nothing is
# installed. PYTHON=... picks the interpreter (default python3).
#
#   env.log          nvidia-smi, versions, commit
#   a_pytest.log     pytest -m gpu: every kernel against its reference, the engine on cupy
#                    against numpy with the kernels off and on, RMD and Alg. 2 on the GPU
#   b_throughput.md  bench/bench_throughput.py --gpu --peers --no-cpu: H v of LR and the MLP
#                    at n = 10^3..10^5 in float32/float64 beside torch.func and JAX on the
#                    same GPU, one RMD hypergradient and one Alg. 2 hyperiteration
#   c_batch.md       bench/bench_device_batch.py: one strong MLP attack batch and one RMD
#                    LR batch on the GPU (the CPU figures come from the same script on a CPU)
#   summary.txt      one line per step: its exit code and seconds
#
# GPU_CHECK_STEPS="a b" runs only those steps (a rerun after a fix); default "a b c".
#
# Without a GPU (no cupy, or no device) it says that it skipped the GPU steps and rehearses
# each one on the numpy-backed cupy stand-in (tests/cupy_standin.py) at tiny sizes, in
# seconds: a typo fails here, not in a GPU slot. Exit code: 0 when every step passed.
set -u
OUT="${1:?usage: bash bench/gpu_check.sh OUTDIR}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false     # JAX takes 75 % of the GPU's memory otherwise
cd "$ROOT" || exit 2
: > "$OUT/summary.txt"

{
  echo "# gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  if command -v nvidia-smi > /dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
  "$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "scipy", "numba", "cupy", "torch", "jax", "jaxlib", "pytest", "hypothesis"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"))
    except Exception as exc:  # noqa: BLE001
        print(name, "not available:", type(exc).__name__, exc)
try:
    import cupy
    rt = cupy.cuda.runtime
    print("cupy: devices", rt.getDeviceCount(), "driver", rt.driverGetVersion(), "runtime",
          rt.runtimeGetVersion(), "device 0:", rt.getDeviceProperties(0)["name"])
except Exception as exc:  # noqa: BLE001
    print("cupy device: none:", type(exc).__name__, exc)
try:
    import torch
    print("torch cuda", torch.version.cuda, "available", torch.cuda.is_available())
except Exception:  # noqa: BLE001
    pass
try:
    import jax
    print("jax devices", jax.devices())
except Exception as exc:  # noqa: BLE001
    print("jax devices: none:", type(exc).__name__, exc)
EOF
} > "$OUT/env.log" 2>&1
cat "$OUT/env.log"

status=0
STEPS=" ${GPU_CHECK_STEPS:-a b c} "
step() {   # step NAME LIMIT LOG COMMAND...: run COMMAND under `timeout LIMIT`, log to LOG
  local name=$1 limit=$2 log=$3 t0 rc
  shift 3
  case "$STEPS" in *" ${name%%_*} "*) ;; *) echo "$name: not in GPU_CHECK_STEPS" | tee -a "$OUT/summary.txt"; return;; esac
  t0=$(date +%s)
  echo "== $name (at most ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$log" 2>&1
  rc=$?
  [ "$rc" -eq 0 ] || status=1
  echo "$name: rc=$rc, $(( $(date +%s) - t0 )) s, log $log" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$log"
}

if "$PY" -c "import cupy, sys; sys.exit(0 if cupy.cuda.runtime.getDeviceCount() > 0 else 1)" \
    > /dev/null 2>&1; then
  step a_pytest 150 a_pytest.log \
    "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_kernels.py tests/test_cupy_branch.py
  step b_throughput 230 b_throughput.md \
    "$PY" bench/bench_throughput.py --gpu --peers --no-cpu --budget 170
  step c_batch 80 c_batch.md bash -c "'$PY' bench/bench_device_batch.py --device gpu && \
    '$PY' bench/bench_device_batch.py --device gpu --model lr --method alg2 --no-header"
else
  echo "gpu_check: no GPU visible to cupy: skipped the GPU steps; rehearsing each on the" \
       "cupy stand-in (tests/cupy_standin.py) at tiny sizes" | tee -a "$OUT/summary.txt"
  STANDIN=("$PY" tests/cupy_standin.py)
  step a_pytest 60 a_pytest.log \
    "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_kernels.py tests/test_cupy_branch.py
  step b_throughput 60 b_throughput.md \
    "${STANDIN[@]}" bench/bench_throughput.py --gpu --peers --no-cpu --quick --budget 3
  step c_batch 60 c_batch.md bash -c "${STANDIN[*]} bench/bench_device_batch.py --device gpu \
    --iters 2 --T 3 && ${STANDIN[*]} bench/bench_device_batch.py --device gpu --model lr \
    --method alg2 --iters 2 --T 3 --no-header"
fi
echo "gpu_check: done, exit $status (logs in $OUT)" | tee -a "$OUT/summary.txt"
exit $status
