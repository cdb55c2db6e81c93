#!/usr/bin/env bash
# Run the flavio b -> s nu nu campaign end to end on an embedded SQLite database:
# initial design, active learning, posterior sampling, validation, SHAP and report.
#
# Usage, from anywhere:  examples/flavio-bsnunu/run.sh [2d|4d]
# Environment (all optional):
#   CAMPAIGN_DATABASE_URL  database URL (default: sqlite:///flavio-bsnunu[-4d].db in the repository root)
#   WORKERS                evaluation processes (default 2)
#   MAX_EVALUATIONS        true-likelihood evaluations, initial design included (default 600)
#   WALKERS, SAMPLE_STEPS  emcee walkers and the longest chain in steps (default 32, 20000)
#   VALIDATION_POINTS      posterior points re-evaluated with flavio (default 50)
#   REPORT                 report file (default flavio-bsnunu[-4d]-report.html)
set -euo pipefail

variant=${1:-2d}
case "$variant" in
  2d) name=flavio-bsnunu ;;
  4d) name=flavio-bsnunu-4d ;;
  *) echo "unknown variant '$variant'; expected 2d or 4d" >&2; exit 2 ;;
esac

repository=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repository"
export CAMPAIGN_DATABASE_URL=${CAMPAIGN_DATABASE_URL:-sqlite:///$name.db}
workers=${WORKERS:-2}

python -c "import flavio" 2>/dev/null || {
  echo "flavio is not installed; run: pip install '.[flavio]'" >&2
  exit 2
}

set -x
campaign show "$name" >/dev/null 2>&1 || campaign create --file "examples/$name/campaign.yaml"
campaign run "$name" --until-converged --max-evaluations "${MAX_EVALUATIONS:-600}" --workers "$workers" --no-progress
campaign sample "$name" --walkers "${WALKERS:-32}" --max-steps "${SAMPLE_STEPS:-20000}" --seed 7
campaign validate "$name" --n "${VALIDATION_POINTS:-50}" --workers "$workers"
campaign explain "$name"
campaign report "$name" -o "${REPORT:-$name-report.html}"
