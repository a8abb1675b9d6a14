# Shared by .ci/run, .ci/newest, .ci/oldest and .ci/pin: sourced, not run.
# Everything installs from the project's own files; nothing here is machine-specific
# except where a Python interpreter is looked for (PATH, then pyenv).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONSTRAINTS="$ROOT/constraints.txt"
# The Python versions pyproject.toml claims; CI tests each one.
PYTHONS=(3.10 3.11 3.12 3.13)

say() { printf '\n== %s\n' "$*"; }
die() { printf 'ci: %s\n' "$*" >&2; exit 1; }

# python_for 3.12 -> the path of a working python3.12, from PATH or pyenv.
python_for() {
  local version=$1 candidate
  for candidate in "$(command -v "python$version" 2>/dev/null)" \
    $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/"python$version" 2>/dev/null | sort -V -r); do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys' >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# new_venv PYTHON DIR [constraints-file]: a fresh virtualenv with pip >= 25.1
# (dependency groups), pinned by the constraints file when one is given.
new_venv() {
  local python=$1 dir=$2 pins=${3:-}
  "$python" -m venv "$dir"
  if [ -n "$pins" ]; then
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -c "$pins" --upgrade pip
  else
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=25.1'
  fi
}

# ensure_redis: export REDIS_URL for the tests. Use REDIS_URL if set; else the Redis
# this kind of machine runs on 127.0.0.1:6379 (started here if it is not answering
# and redis-server exists); else leave it unset and let the suite start its own.
ensure_redis() {
  if [ -n "${REDIS_URL:-}" ]; then return 0; fi
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    export REDIS_URL=redis://127.0.0.1:6379/0
  fi
  command -v redis-server >/dev/null 2>&1 || [ -n "${REDIS_URL:-}" ] \
    || die "the tests need redis-server on PATH or REDIS_URL (see docs/development.md)"
}

# ensure_prometheus: the prometheus and promtool binaries (Debian's prometheus
# package): the end-to-end scrape test runs a real Prometheus server, and CI checks
# deploy/prometheus/ with promtool. Installed with apt-get when missing.
ensure_prometheus() {
  if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 \
    || die "the tests need prometheus and promtool on PATH (Debian: apt-get install prometheus)"
  say "install prometheus (Debian package: prometheus, promtool)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null \
    || die "apt-get install prometheus failed (see docs/development.md)"
  command -v prometheus >/dev/null 2>&1 || die "prometheus is still not on PATH"
}

# check_alert_rules: promtool validates the alert rules and runs their unit tests.
check_alert_rules() {
  promtool check rules "$ROOT"/deploy/prometheus/cse-bridge-alerts.yml
  (cd "$ROOT/deploy/prometheus" && promtool test rules cse-bridge-alerts.test.yml)
}

# run_pytest DIR VENV [pytest args...]: pytest from DIR, exit 5 (no test ran) fails.
run_pytest() {
  local dir=$1 venv=$2 status=0
  shift 2
  (cd "$dir" && "$venv/bin/python" -m pytest -p no:cacheprovider "$@") || status=$?
  [ "$status" -eq 5 ] && die "pytest collected no test in $dir"
  return "$status"
}
