#!/usr/bin/env bash
# PPO on learned T-REX rewards, several runs side by side on one GPU (configs/agent-impala-learned.yaml), for a
# fixed wall-clock budget; what each run reached comes back as a tar of its slimmed series checkpoints.
#
#   RUNS="starpilot:path/to/reward_run:0 fruitbot:path/to/reward_run:0" DEADLINE=540 OUT=out bash bench/learned_agents_gpu.sh
#
# RUNS: game:reward_model:seed, one per run. DEADLINE: seconds from the start after which every run is stopped (the
# last series checkpoint it wrote is what it reached; the series steps match the zoo's *-impala checkpoints).
# SITE_TAR (optional): a tar.xz of site-packages unpacked to /tmp/site first, for a machine without the suite's
# dependencies. DEVICE: cuda (default) or cpu, to rehearse the script. EXTRA: more overrides for every run (e.g.
# reward.center=false). EVAL_EPISODES (optional): the newest checkpoint of each run also plays that many held-out
# episodes on the device (evaluation seed 0), sent back in eval/ where bench/learned_agents.py reads it as its cache;
# it runs after DEADLINE (about 10 s a run on an H100 for 100 episodes), so leave it that time.
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
import sys, torch
from pathlib import Path
keep = ("format", "version", "algo", "step", "mean_return", "config", "model")
for name in sys.argv[1:]:  # the newest series checkpoints: the weights and what loading needs, no optimizer state
    run = Path("/tmp/agents") / name
    files = sorted((run / "checkpoints").glob("step_*.pt"))
    (run / "slim").mkdir(exist_ok=True)
    for f in files[-4:]:
        ck = torch.load(f, map_location="cpu", weights_only=True)
        torch.save({k: v for k, v in ck.items() if k in keep}, run / "slim" / f.name)
    for extra in ("progress.csv", "config.yaml"):
        if (run / extra).exists():
            (run / "slim" / extra).write_bytes((run / extra).read_bytes())
    print(name, "kept", [f.name for f in files[-4:]], "of", len(files))
PY
if [ "${EVAL_EPISODES:-0}" -gt 0 ]; then
  for name in "${names[@]}"; do
    newest=$(ls /tmp/agents/$name/slim/step_*.pt 2>/dev/null | tail -1)
    [ -n "$newest" ] && $PY -c "import sys; from procgen_common.evaluation import evaluate_checkpoint as e
s, _ = e(sys.argv[1], 'test', episodes=int(sys.argv[2]), seed=0, device=sys.argv[3])
print(sys.argv[1], 'held-out return', round(s['mean_return'], 2))" "$newest" "$EVAL_EPISODES" "${DEVICE:-cuda}" &
  done
  wait
fi
for name in "${names[@]}"; do
  tar -C /tmp/agents/$name/slim -cf "$OUT/$name.tar" .
done
echo "total $(( $(date +%s) - T0 )) s"
