#!/usr/bin/env bash
# Submit hgpo-train to a running Ray cluster; Hydra overrides pass through.
#   RAY_ADDRESS=http://127.0.0.1:8265 launch/submit.sh algorithm=hgpo trainer.iterations=160
# The cluster's token (RAY_AUTH_TOKEN or ~/.ray/auth_token) authenticates the submission.
set -euo pipefail
cd "$(dirname "$0")/.."
exec ray job submit --working-dir . \
  --runtime-env-json '{"pip": ["-e ."], "env_vars": {"TOKENIZERS_PARALLELISM": "false"}}' \
  -- python -m hgpo.train trainer.ray_address=auto "$@"
