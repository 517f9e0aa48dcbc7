#!/usr/bin/env bash
# timm's own model tests (tests/test_models.py of the installed timm's source package) on the
# models this project registers (models/: hornet_*, convmixer), with no assertion changed:
#   1. download the sdist of the installed timm version (pip, package registry only) and unpack
#      it in a scratch folder; drop its timm/ sources so the tests import the installed timm;
#   2. add 'hornet' to the test file's FEAT_INTER_FILTERS (the modules whose models must have
#      forward_intermediates / prune_intermediate_layers, as timm lists 'convnext');
#   3. append scripts/timm_tests_conftest.py to its tests/conftest.py: imports our models before
#      collection, deselects every case that is not one of our models, and seeds timm's download
#      cache with synthetic official-layout HorNet checkpoints (no network) unless
#      NEURAL_ECHOS_ONLINE=1 (then the pretrained tests download the official weights);
#   4. run pytest on tests/test_models.py; extra arguments go to pytest (e.g. -x, -k hornet_tiny).
# Usage: scripts/timm_model_tests.sh [pytest args]   (PYTHON=... to pick the interpreter,
#        WORK=dir to keep the scratch folder; it is removed at the end otherwise)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
if ! VERSION=$("$PY" -c 'import timm; print(timm.__version__)' 2>/dev/null); then
    echo "error: cannot import timm with $PY; run 'make install' or set PYTHON=" >&2
    exit 2
fi
if [[ -n "${WORK:-}" ]]; then
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/timm-tests.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
fi
SRC="$WORK/timm-$VERSION"
if [[ ! -f "$SRC/tests/test_models.py" ]]; then
    "$PY" -m pip download --quiet --no-binary :all: --no-deps "timm==$VERSION" -d "$WORK"
    tar -xzf "$WORK/timm-$VERSION.tar.gz" -C "$WORK"
    rm -rf "$SRC/timm"
    "$PY" - "$SRC/tests/test_models.py" <<'PYEOF'
import sys
path = sys.argv[1]
text = open(path).read()
anchor = "FEAT_INTER_FILTERS = [\n"
if text.count(anchor) != 1:
    sys.exit(f"error: {path}: FEAT_INTER_FILTERS list not found; this timm version's test file differs")
open(path, "w").write(text.replace(anchor, anchor + "    'hornet',\n"))
PYEOF
    cat "$REPO/scripts/timm_tests_conftest.py" >> "$SRC/tests/conftest.py"
fi
cd "$SRC"
echo "timm $VERSION tests from $SRC"
TORCH_HOME="$WORK/torch_home" NEURAL_ECHOS_REPO="$REPO" \
    "$PY" -m pytest tests/test_models.py -p no:cacheprovider -W ignore::pytest.PytestUnknownMarkWarning -q -rfEs "$@"
