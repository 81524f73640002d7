#!/usr/bin/env bash
# PPO on learned T-REX rewards, several runs side by side on one GPU (configs/agent-impala-learned.yaml), for a
# fixed wall-clock budget; what each run reached comes back as a tar of its slimmed series checkpoints.
#
#   RUNS="starpilot:path/to/reward_run:0 fruitbot:path/to/reward_run:0" DEADLINE=540 OUT=out bash bench/learned_agents_gpu.sh
#
# RUNS: game:reward_model:seed, one per run. DEADLINE: seconds from the start after which every run is stopped (the
# last series checkpoint it wrote is what it reached; the series steps match the zoo's *-impala checkpoints).
# SITE_TAR (optional): a tar.xz of site-packages unpacked to /tmp/site first, for a machine without the suite's
# dependencies. DEVICE: cuda (default) or cpu, to rehearse the script.
T0=$(date +%s)
if [ -n "$SITE_TAR" ]; then
  mkdir -p /tmp/site && tar -C /tmp/site -xJf "$SITE_TAR" || exit 3
  export PYTHONPATH=/tmp/site:$PWD LD_LIBRARY_PATH=$(dirname "$SITE_TAR")/lib:$LD_LIBRARY_PATH
fi
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi -L 2>/dev/null; nproc
$PY -c "import procgen, torch; print(torch.__version__, torch.cuda.is_available())" || exit 4
echo "setup took $(( $(date +%s) - T0 )) s"
END=$(( T0 + ${DEADLINE:-540} ))
names=()
for spec in $RUNS; do
  IFS=: read -r game model seed <<< "$spec"
  name=$game-seed$seed; names+=("$name")
  timeout --signal=INT $(( END - $(date +%s) )) $PY -m policies.train -c configs/agent-impala-learned.yaml \
    env.game=$game reward.model=$model train.seed=$seed train.device=${DEVICE:-cuda} ${EXTRA} \
    run.dir=/tmp/agents/$name > /tmp/agents-$name.log 2>&1 &
done
wait
for name in "${names[@]}"; do
  echo "== $name"; tail -c 400 /tmp/agents-$name.log | tr '\r' '\n' | tail -2; tail -1 /tmp/agents/$name/progress.csv
done
$PY - "${names[@]}" <<'PY'
import os, sys, tarfile, torch
from pathlib import Path
out = Path(os.environ["OUT"])
keep = ("format", "version", "algo", "step", "mean_return", "config", "model")
for name in sys.argv[1:]:
    run = Path("/tmp/agents") / name
    files = sorted((run / "checkpoints").glob("step_*.pt"))
    with tarfile.open(out / f"{name}.tar", "w") as tar:
        for f in files[-4:]:
            slim = run / f"slim-{f.name}"
            ck = torch.load(f, map_location="cpu", weights_only=True)
            torch.save({k: v for k, v in ck.items() if k in keep}, slim)
            tar.add(slim, arcname=f.name)
        for extra in ("progress.csv", "config.yaml"):
            if (run / extra).exists():
                tar.add(run / extra, arcname=extra)
    print(name, "kept", [f.name for f in files[-4:]], "of", len(files))
PY
echo "total $(( $(date +%s) - T0 )) s"
