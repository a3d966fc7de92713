#!/usr/bin/env bash
# Installs speedmap from this checkout, then runs its main job or its tests.
#
#   scripts/setup.sh run  [ARGS...]    the quick study:  speedmap compare --quick ARGS
#   scripts/setup.sh test [ARGS...]    the test suite:   ruff format --check, ruff check, python -m pytest -q ARGS
#                                      (-n auto: one pytest-xdist worker per core, each pinned to its core)
#
# 1. System packages for the browser destination: chromium, chromium-driver, npm. Only the missing
#    ones, and only as root, one `apt-get install` each: one that cannot be installed (Debian's npm
#    next to NodeSource's Node.js, say) is reported and the others still go in. Not root: nothing is
#    installed, a note says what to install.
# 2. Python: the virtual environment .venv (created if absent), then `pip install -e` with the
#    extras train,browser (run) or all (test); for the tests, the real Roboflow clients in .venv-clients.
# 3. The browser page's runtime, from web/'s npm lockfile, when npm is there.
# 4. The job.
# Only steps 2 and 4 can make this script fail. Without Chromium or npm it goes on, with a note,
# and the browser destination (and the browser tests) are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

note() { echo "setup: $*" >&2; }

case "${1:-}" in
  run) extras="train,browser" ;;
  test) extras="all" ;;
  *) echo "usage: scripts/setup.sh run|test [ARGS...]" >&2; exit 2 ;;
esac
mode=$1
shift

# 1. System packages: the Debian package for each missing command
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    note "not root, so no system packages are installed; for the browser destination, as root: apt-get install ${missing[*]}"
  elif ! command -v apt-get >/dev/null; then
    note "no apt-get; for the browser destination, install (Debian names): ${missing[*]}"
  else
    apt-get update -qq || note "apt-get update failed; trying the installs anyway"
    for pkg in "${missing[@]}"; do
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null \
        || note "apt-get could not install $pkg (apt's message is above); going on without it"
    done
  fi
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  note "no Chromium or chromedriver: the browser destination and the browser tests are skipped;" \
    "to add them: apt-get install chromium chromium-driver (as root), then run this again"
fi

# 2. Python
[ -x .venv/bin/python ] || python3 -m venv .venv
# shellcheck disable=SC1091  # created by the line above
. .venv/bin/activate
pip install -q -e ".[$extras]"
if [ "$mode" = test ]; then
  # the real Roboflow clients the server tests drive, in their own venv (their pins clash with ours); the
  # marker holds the pins installed, as tests/conftest.py reads it
  # (bash alone: no grep or xargs, which a minimal machine may lack)
  pins=()
  while read -r line; do
    [[ -z "$line" || "$line" == "#"* ]] || pins+=("$line")
  done < tests/clients.txt
  installed=""
  [ -f .venv-clients/.installed ] && installed="$(< .venv-clients/.installed)"
  if [ "$installed" != "${pins[*]}" ]; then
    python -m venv .venv-clients
    .venv-clients/bin/python -m pip install -q "${pins[@]}"
    printf %s "${pins[*]}" > .venv-clients/.installed
  fi
fi

# 3. The browser page's runtime: onnxruntime-web's files, copied into src/speedmap/web/static/vendor
if ! command -v npm >/dev/null; then
  note "no npm, so the browser page's runtime is not (re)built; without it the browser destination and" \
    "the browser tests are skipped; to add it: install Node.js with npm (Debian: apt-get install npm;" \
    "or NodeSource, nvm), then run this again"
elif ! { npm ci --ignore-scripts --no-audit --no-fund --prefix web && npm run build --prefix web; }; then
  note "the browser page's runtime did not build (npm's message is above); going on without it:" \
    "the browser destination and the browser tests are skipped"
fi

# 4. The job
if [ "$mode" = run ]; then
  exec speedmap compare --quick "$@"
else
  # the formatter owns the layout and the linter keeps functions short: both are part of the test
  python -m ruff format --check . || { rc=$?; note "ruff format would change the files above: run 'ruff format .'"; exit $rc; }
  python -m ruff check . || { rc=$?; note "ruff check found the problems above"; exit $rc; }
  # one test worker per core, each pinned to its core (tests/conftest.py); `-n 0` after `test` for one process
  exec python -m pytest -q -n auto --dist worksteal "$@"
fi
