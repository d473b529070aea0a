#!/usr/bin/env bash
# The committed final runs of issues 22 and 23: each v1 task on the test block, every learned method trained 3 times,
# then the offline BC-rep check and the all-task table. Run it again after an interruption: finished trainings are
# reused from benchmarks/results/<task>/trainings/ (commit those records as they appear, and a new machine resumes from
# them too) and an unfinished one resumes from runs/cache/. A task whose results.json already holds a finished 3-training test-block run
# is skipped (delete that file to run it again). Progress: runs/finals.progress; logs: runs/finals_<task>.log.
#     bash scripts/finals.sh              # door push stack
#     bash scripts/finals.sh stack        # some of them
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=${MUJOCO_GL:-egl}
methods=(vinn vinn_random bc bc_paper bc_rep open_loop random vinn_chunk vinn_bc_encoder)
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(door push stack)
mkdir -p runs
log() { echo "$(date '+%F %T') $*" | tee -a runs/finals.progress; }
finished() {  # a 3-training test-block run of these methods is already committed
  .venv/bin/python - "$1" "${methods[@]}" <<'PY'
import json, sys
from pathlib import Path
path = Path(f"benchmarks/results/{sys.argv[1]}/results.json")
r = json.loads(path.read_text()) if path.exists() else {}
done = (r.get("block") == "test" and len(r.get("trainings", [])) == 3 and not r["args"]["smoke"]
        and set(sys.argv[2:]) <= set(r["args"]["methods"]))
sys.exit(0 if done else 1)
PY
}
for task in "${tasks[@]}"; do
  if finished "$task"; then log "$task: already final, skipped"; continue; fi
  log "$task: started"
  .venv/bin/python "benchmarks/run_$task.py" --seed 0 --train-seeds 3 --methods "${methods[@]}" \
    --out "benchmarks/results/$task" >> "runs/finals_$task.log" 2>&1 || { log "$task: FAILED (runs/finals_$task.log)"; exit 1; }
  log "$task: done"
done
.venv/bin/python benchmarks/bc_rep.py --out benchmarks/results >> runs/finals_bc_rep.log 2>&1 || { log "bc_rep: FAILED"; exit 1; }
log "bc_rep: done"
.venv/bin/python benchmarks/closed_loop.py || { log "closed_loop: FAILED"; exit 1; }
log "closed_loop: done"
