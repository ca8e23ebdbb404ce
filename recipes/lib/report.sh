# Shared by the experiment recipes (recipes/<name>.sh): run the sweeps, then write
# docs/experiments/<name>.md: the claim, the commands, commit, hardware and wall time, a `seqtool compare`
# table per sweep, the plots, and the verdict the recipe computes from the measured numbers.
#
#   source "$(dirname "$0")/lib/report.sh"
#   report_begin NAME "the claim, in one sentence"
#   report_sweep SWEEP overrides...                 # seqtool train -m ... run_dir=$REPORT_RUNS/SWEEP
#   report_eval  SWEEP eval options...              # seqtool eval RUN OPTIONS on every run of the sweep
#   report_table "title" SWEEP [compare options]    # a compare table (Markdown) in the report
#   report_plot  FILE.png "caption" SWEEP --curve KEY [compare options]
#   report_text  "a paragraph"                      # e.g. the verdict, what differs from the paper
#   report_end
#
# EXPERIMENTS_DIR (default docs/experiments) and RUNS_DIR (default runs/experiments) move the outputs;
# REUSE=RUNS rewrites the report from the runs of an earlier call (e.g. after editing its text) without
# training again. SEQTOOL (default seqtool) is the command, PYTHON (default python3) the interpreter it runs on;
# JOBS (default 2) sweep jobs run at once, one thread each (JOBS=1: one job on OMP_NUM_THREADS, default 2).
# REPORT_ARGS: set by a recipe to its positional arguments (DATA_DIR), shown in the page's Reproduce line.
# Any argument of the recipe after its own is an override of every sweep, e.g. debug=smoke.

seqtool=${SEQTOOL:-seqtool}
REPORT_DIR=${EXPERIMENTS_DIR:-docs/experiments}
JOBS=${JOBS:-2}
REPORT_THREADS=$((JOBS > 1 ? 1 : ${OMP_NUM_THREADS:-2}))  # of each sweep job and evaluation: JOBS share the cores

report_begin() {
  REPORT_NAME=$1
  REPORT_CLAIM=$2
  REPORT_RUNS=${REUSE:-${RUNS_DIR:-runs/experiments}/$REPORT_NAME/$(date +%Y%m%d-%H%M%S)}
  REPORT_START=$(date +%s)
  REPORT_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)  # the code the runs are made with
  REPORT_BODY=$(mktemp)
  REPORT_COMMANDS=()
  mkdir -p "$REPORT_DIR/img" "$REPORT_RUNS"
}

report_sweep() {
  local name=$1
  shift
  local command=(train -m "$@" "${REPORT_EXTRA[@]}" "run_dir=$REPORT_RUNS/$name" --jobs "$JOBS")
  # several jobs share the terminal: no progress bars; TensorBoard files are not needed for the report
  local quiet=(trainer.progress=false trainer.tensorboard=false)
  REPORT_COMMANDS+=("seqtool ${command[*]}")
  [ -z "${REUSE:-}" ] || return 0  # the report of runs made before: nothing to train
  OMP_NUM_THREADS=$REPORT_THREADS $seqtool "${command[@]:0:2}" "${quiet[@]}" "${command[@]:2}"
}

report_eval() {
  # each evaluation is appended to RUN/eval/evals.jsonl: `report_table SWEEP --evals` compares them
  local sweep=$1
  shift
  REPORT_COMMANDS+=("seqtool eval RUN $* --json   # every RUN of $sweep")
  [ -z "${REUSE:-}" ] || return 0
  local config running=0
  while read -r config; do  # JOBS evaluations at a time, one thread each, as the sweep's jobs
    OMP_NUM_THREADS=$REPORT_THREADS $seqtool eval "$(dirname "$config")" "$@" --json >/dev/null &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
  done < <(find "$REPORT_RUNS/$sweep" -name config.yaml -not -path '*/.hydra/*' | sort)
  while [ "$running" -gt 0 ]; do wait -n; running=$((running - 1)); done  # a failed one stops the recipe
}

report_table() {
  local title=$1 sweep=$2
  shift 2
  {
    printf '\n### %s\n\n' "$title"
    $seqtool compare "$REPORT_RUNS/$sweep" --format md "$@"
  } >>"$REPORT_BODY"
}

report_plot() {
  local file=$1 caption=$2 sweep=$3
  shift 3
  $seqtool compare "$REPORT_RUNS/$sweep" --plot "$REPORT_DIR/img/$file" "$@" >/dev/null
  report_image "$file" "$caption"
}

report_image() {
  printf '\n![%s](img/%s)\n\n*%s*\n' "$2" "$1" "$2" >>"$REPORT_BODY"
}

report_text() {
  printf '\n%s\n' "$1" >>"$REPORT_BODY"
}

report_end() {
  local seconds=$(($(date +%s) - REPORT_START))
  local commit=$REPORT_COMMIT
  if [ -n "${REUSE:-}" ] && [ -f "$REPORT_RUNS/wall_seconds" ]; then
    seconds=$(cat "$REPORT_RUNS/wall_seconds")  # the time the runs took, not the report's
    [ ! -f "$REPORT_RUNS/commit" ] || commit=$(cat "$REPORT_RUNS/commit")  # and the code that made them
  else
    echo "$seconds" >"$REPORT_RUNS/wall_seconds"
    echo "$commit" >"$REPORT_RUNS/commit"
  fi
  local cpu
  cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
  {
    printf '# %s\n\n' "$REPORT_NAME"
    printf '**Claim.** %s\n\n' "$REPORT_CLAIM"
    # REPORT_ARGS: the recipe's positional arguments (a data folder), which come before any override
    printf '**Reproduce:** `recipes/%s.sh%s%s` (writes this page).\n\n' "$REPORT_NAME" "${REPORT_ARGS:+ $REPORT_ARGS}" \
      "${REPORT_EXTRA:+ ${REPORT_EXTRA[*]}}"
    printf '| | |\n|---|---|\n'
    printf '| commit | %s |\n' "$commit"
    printf '| hardware | %s CPU cores%s, %s; torch %s |\n' "$(nproc)" "${cpu:+ ($cpu)}" \
      "$(python3 -c 'import platform; print(platform.system())' 2>/dev/null)" \
      "$(${PYTHON:-python3} -c 'import torch; print(torch.__version__)' 2>/dev/null || echo unknown)"
    printf '| wall time | %d min %02d s (every sweep, %s job(s) at a time) |\n' $((seconds / 60)) $((seconds % 60)) "$JOBS"
    printf '| date | %s |\n' "$(date -u +%Y-%m-%d)"
    printf '\nThe sweeps (runs under `%s`; CPU defaults, jobs of %s thread(s) each):\n\n```sh\n' "$REPORT_RUNS" "$REPORT_THREADS"
    printf '%s\n' "${REPORT_COMMANDS[@]}"
    printf '```\n'
    cat "$REPORT_BODY"
  } >"$REPORT_DIR/$REPORT_NAME.md"
  rm -f "$REPORT_BODY"
  echo "wrote $REPORT_DIR/$REPORT_NAME.md (runs in $REPORT_RUNS)"
}

# SEEDS (default 1,2,3) is the seed list of every sweep: SEEDS=1 for a quick look.
