#!/bin/bash
# A prepared device check for a session that is lent a GPU (one call of the device tool, < 10 min):
# the CUDA tests that need OpenMM, then the ALDP `cpu` PITA ladder at its former sizes (3,000 stage-0
# steps, the paper's three rungs: the current 12,000-step, eight-rung preset would not fit one call)
# with GPU-sized batches (train/finetune batch 512, 2000 particles, 200 SMC steps; EXTRA adds --set
# overrides, later ones win), from 1200 K
# MD frames made beforehand on the CPU, so that the GPU time goes to training and annealing.
#
# Before the call, on the CPU (see docs/scaling.md, "Prepared for the next GPU"):
#   * the stage-0 frames: .gpu/s0.npz with an `x` array (n, 66) in nm, e.g. `stage_0/samples.npz`
#     of `boltzpath run pita --target aldp-fab --preset cpu` stopped after its MD stage, and its
#     cost (that stage's `initial_data` evaluations) in .gpu/s0_evals.txt; .gpu/ in .git/info/exclude;
#   * the wheels the GPU image lacks, for its Python 3.12, in .whl/ (openmm, mdtraj, deeptime, arviz,
#     xarray-einstats, h5netcdf, platformdirs; README of the device tool for the pip download line).
# Call: run(command="RUN_LIMIT=480 bash scripts/gpu_aldp_check.sh", carry=[".whl", ".gpu"]).
# Dry run here on the CPU with tiny sizes: LOCAL=1 PY=.venv/bin/python DEVICE=cpu THREADS=1 OUT=/tmp/g
#   EXTRA="--set train.steps=3 --set finetune.steps=3 --set anneal.n_steps=4 --set relax.n_steps=3
#   --set n_particles=32 --set buffer_size=32" bash scripts/gpu_aldp_check.sh
# Results come back in $OUT: cuda_tests.log, pita_stdout.log, run.log and run.tgz (the run folder
# without model weights and without the stage-0 frames); score the final stage here with
# benchmarks/bench_pita_peptides.py --runs gpu=<unpacked run>.
set -u
OUT=${OUT:?OUT must name an output folder}
PY=${PY:-python3}
if [ -z "${LOCAL:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null; nproc
$PY -c "import torch, openmm, mdtraj; print('torch', torch.__version__, 'openmm', openmm.__version__, 'cuda', torch.cuda.is_available())" || exit 3
if [ -z "${LOCAL:-}" ]; then
  timeout 80 $PY -m pytest -q -p no:cacheprovider tests/test_parallel_cuda.py -k "peptide or fk_annealing or tiny_pita" \
    > "$OUT/cuda_tests.log" 2>&1
  echo "cuda tests rc=$?"; tail -4 "$OUT/cuda_tests.log"
fi
T0=$(date +%s)
timeout "${RUN_LIMIT:-400}" $PY -m boltzpath run pita --target aldp-fab --preset cpu --device "${DEVICE:-cuda}" --seed 0 \
  --threads "${THREADS:-4}" --stage0-data .gpu/s0.npz --stage0-evaluations "$(cat .gpu/s0_evals.txt)" \
  --set train.steps=3000 --set 'temperatures=[1200.0, 755.95, 555.52, 300.0]' \
  --set train.batch_size=512 --set finetune.batch_size=512 --set n_particles=2000 --set buffer_size=2000 \
  --set anneal.n_steps=200 ${EXTRA:-} --out /tmp/gpu_aldp_run > "$OUT/pita_stdout.log" 2>&1
echo "pita rc=$? wall $(( $(date +%s) - T0 )) s"
cp /tmp/gpu_aldp_run/run.log "$OUT/run.log" 2>/dev/null; tail -25 /tmp/gpu_aldp_run/run.log
tar czf "$OUT/run.tgz" --exclude='*.pt' --exclude='checkpoint*' --exclude='gpu_aldp_run/stage_0/*.npz' \
  -C /tmp gpu_aldp_run
ls -la "$OUT"
