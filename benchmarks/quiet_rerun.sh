#!/usr/bin/env bash
# Re-run, in sequence and with the load guard on, the rows of docs/results/benchmarks.md that were still measured on
# a loaded machine (issue 15), writing each log (and JSON where the script writes one) into the folder $1:
#   1. instance metrics   benchmarks/instance_metrics.py (zoo.metrics vs HoVer-Net stats_utils, shipped U-Net's
#                          predictions on the 14 MoNuSeg test images; inference cached, done before any timing)
#   2. inference          benchmarks/unet_speed.py --skip-training (the row's inference half: U-Net base 16,
#                          KerasForward vs the exported SavedModel on the 14 test images; the training half of the
#                          row's command is the "training core overhead" row, already re-measured quietly)
#   3. GAN iterations/s   benchmarks/gan.py at the configs' size (3 timed iterations, 1 warm-up) and reduced
#                          (32 maps, batch 80: 20 timed, 2 warm-up) -- the same commands as the table's rows
#   4. serving, bad-request mix  benchmarks/serving_load.py --bad-share 0.2 (its row is flagged at load 3.70)
# Before each benchmark the script waits until the 1-min load average is <= QUIET_LOAD (0.9; the guard refuses above
# 1.0) -- the previous benchmark leaves it near 2, and it decays by half in ~42 s -- for at most WAIT_MAX s (240).
# Expected wall time on a quiet 2-core machine: about 10-12 min in all, of which ~3-4 min are the waits
# (instance metrics ~1.5-2 min with HoVer-Net's side timed once per image and ours best of 3; inference ~1 min;
# GAN ~3.5 min; serving ~1 min). Sizes are the table's own, except: HoVer-Net's side is timed once (best of 1),
# and the inference row runs without the training half.
#
#   benchmarks/quiet_rerun.sh OUT_DIR                        # the quiet window: refuses a busy machine per run
#   benchmarks/quiet_rerun.sh OUT_DIR --smoke --max-load 50  # check the script: smallest sizes, runs FLAGGED
#   benchmarks/quiet_rerun.sh OUT_DIR --stain                # also the stain rows (benchmarks/stain.py --images 14
#                                                            # --repeats 3, peers from /work/bench-venv; a few min more)
#                                                            # after the Reinhard fast-path changes of 957144f / 2cc44b9
#
# Environment: HOVERNET_REF (default /work/ref/hover_net, a working copy of github.com/vqdang/hover_net outside the
# repo), PYTHON (default .venv/bin/python when present, else python), QUIET_LOAD, WAIT_MAX.
set -u
out=${1:?usage: benchmarks/quiet_rerun.sh OUT_DIR [--smoke] [--max-load X]}
shift
smoke=0
stain=0
max_load=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --stain) stain=1 ;;
    --max-load) max_load=(--max-load "$2"); shift ;;
    *) echo "quiet_rerun.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
py=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
ref=${HOVERNET_REF:-/work/ref/hover_net}
quiet=${QUIET_LOAD:-0.9}
wait_max=${WAIT_MAX:-240}
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
{
  echo "commit $(git rev-parse --short HEAD)$([ -n "$(git status --porcelain --untracked-files=no -- zoo benchmarks scripts serving)" ] && echo -dirty)"
  echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"; echo "cpus $(nproc)"; echo "smoke $smoke ${max_load[*]:-}"
} > "$out/meta.txt"

wait_quiet() {  # until the 1-min load <= $quiet (skipped when --max-load is given: those runs are flagged anyway)
  [ ${#max_load[@]} -gt 0 ] && return 0
  local t=0
  while awk -v q="$quiet" '{exit !($1 > q)}' /proc/loadavg; do
    if [ "$t" -ge "$wait_max" ]; then echo "  still busy after ${wait_max}s: $(cut -d' ' -f1-3 /proc/loadavg)"; return 0; fi
    sleep 5; t=$((t + 5))
  done
  echo "  quiet after ${t}s: load $(cut -d' ' -f1-3 /proc/loadavg)"
}

status=0
run() {  # run NAME CMD...: wait for a quiet machine, run, keep the log, note the exit status
  local name=$1; shift
  echo "== $name: $*" | tee -a "$out/summary.txt"
  wait_quiet | tee -a "$out/summary.txt"
  local t0=$SECONDS
  "$@" "${max_load[@]}" > "$out/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc, $((SECONDS - t0)) s, $(grep -h 'load average at' "$out/$name.log" | tr '\n' ' ')" | tee -a "$out/summary.txt"
  [ $rc -ne 0 ] && status=1
  return 0
}

if [ "$smoke" = 1 ]; then
  run instance_metrics "$py" benchmarks/instance_metrics.py --reference "$ref" --images 1 --repeat 1 --json "$out/instance_metrics.json"
  run inference "$py" benchmarks/unet_speed.py --base-filters 16 --skip-training --images 2 --no-savedmodel
  run gan "$py" benchmarks/gan.py --iterations 1 --warmup 1 --filters 8 --batch 10 --json "$out/gan.json"
  run serving_bad_requests "$py" benchmarks/serving_load.py --clients 1 --seconds 2 --rounds 0 --bad-share 0.2
  [ "$stain" = 1 ] && run stain "$py" benchmarks/stain.py --images 1 --repeats 1 --methods reinhard --out-dir "$out/stain"
else
  run instance_metrics "$py" benchmarks/instance_metrics.py --reference "$ref" --repeat 3 --json "$out/instance_metrics.json"
  run inference "$py" benchmarks/unet_speed.py --base-filters 16 --skip-training --images 14
  run gan_config_size "$py" benchmarks/gan.py --iterations 3 --warmup 1 --json "$out/gan_config_size.json"
  run gan_reduced "$py" benchmarks/gan.py --iterations 20 --warmup 2 --filters 32 --batch 80 --json "$out/gan_reduced.json"
  run serving_bad_requests "$py" benchmarks/serving_load.py --clients 2 --seconds 10 --rounds 0 --bad-share 0.2
  [ "$stain" = 1 ] && run stain "$py" benchmarks/stain.py --images 14 --repeats 3 --out-dir "$out/stain"
fi
echo "done: $SECONDS s in all; logs in $out (summary.txt)" | tee -a "$out/summary.txt"
exit $status
