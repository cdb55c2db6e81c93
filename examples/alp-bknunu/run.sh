#!/usr/bin/env bash
# Run the ALP campaign under Python 3.12: seed it with 300 stored ALPaca
# evaluations, then active learning, sampling, validation, SHAP and report.
#
# Usage: examples/alp-bknunu/run.sh
# Environment (all optional):
#   CAMPAIGN_DATABASE_URL  database URL (default: sqlite:///alp-bknunu.db in the repository root)
#   SEED_CSV               CSV of evaluated points to start from
#                          (default: ../shared/data/alp_bknunu_lhs300.csv next to the repository)
#   WORKERS                evaluation processes (default 2); each needs about 0.8 GB of memory
#   MAX_EVALUATIONS        evaluated points at which active learning stops (default 600)
#   REPORT                 report file (default alp-bknunu-report.html)
set -euo pipefail

repository=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repository"
export CAMPAIGN_DATABASE_URL=${CAMPAIGN_DATABASE_URL:-sqlite:///alp-bknunu.db}
workers=${WORKERS:-2}
seed_csv=${SEED_CSV:-$repository/../shared/data/alp_bknunu_lhs300.csv}

python -c 'import sys; sys.exit(sys.version_info < (3, 12))' || {
  echo "the ALP example needs Python 3.12 or newer; activate a 3.12 environment with: pip install -e . alpaca-ALPs==1.2.0" >&2
  exit 2
}
python -c "import alpaca" 2>/dev/null || {
  echo "alpaca-ALPs is not installed; run: pip install alpaca-ALPs==1.2.0" >&2
  exit 2
}

set -x
campaign create --file examples/alp-bknunu/campaign.yaml
if [ -f "$seed_csv" ]; then
  campaign add-points alp-bknunu --from-csv "$seed_csv"
fi
campaign run alp-bknunu --until-converged --max-evaluations "${MAX_EVALUATIONS:-600}" --workers "$workers" --no-progress
campaign sample alp-bknunu --seed 11
campaign validate alp-bknunu --n 30 --workers "$workers"
campaign explain alp-bknunu
campaign report alp-bknunu -o "${REPORT:-alp-bknunu-report.html}"
