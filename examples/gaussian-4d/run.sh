#!/usr/bin/env bash
# Run the correlated 4-D Gaussian campaign end to end on an embedded SQLite
# database: initial design, active learning, posterior sampling, validation,
# SHAP and the HTML report. Takes about a minute on 2 cores.
#
# Usage, from anywhere:  examples/gaussian-4d/run.sh
# Environment (all optional):
#   CAMPAIGN_DATABASE_URL  database URL (default: sqlite:///gaussian-4d.db in the repository root)
#   WORKERS                evaluation processes (default 2)
#   MAX_EVALUATIONS        true-likelihood evaluations, initial design included (default 640)
set -euo pipefail

repository=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repository"
export CAMPAIGN_DATABASE_URL=${CAMPAIGN_DATABASE_URL:-sqlite:///gaussian-4d.db}
workers=${WORKERS:-2}

set -x
campaign show gaussian-4d >/dev/null 2>&1 || campaign create --file examples/gaussian-4d/campaign.yaml
campaign run gaussian-4d --until-converged --max-evaluations "${MAX_EVALUATIONS:-640}" --workers "$workers" --no-progress
campaign sample gaussian-4d --seed 7
campaign validate gaussian-4d --n 50 --workers "$workers"
campaign explain gaussian-4d --plots gaussian-4d-plots
campaign report gaussian-4d -o gaussian-4d-report.html
campaign show gaussian-4d
