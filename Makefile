# The two commands of the README's Quick start.
PY ?= python3
PIP = $(PY) -m pip install --disable-pip-version-check -q

.PHONY: quickstart install test test-fast install-test

# Skipped when this checkout is the installed one and pyproject.toml has not changed since (a re-run
# of the quickstart then does no work at all).
install:
	@if [ .eib-installed -nt pyproject.toml ] && (cd / && $(PY) -c 'import sys, harness; sys.exit(not harness.__file__.startswith(sys.argv[1]))' "$(CURDIR)/") 2>/dev/null; \
	then echo "eibert already installed from $(CURDIR)"; else $(PIP) -e . && touch .eib-installed; fi

# Installs everything and runs the main job on the embedded defaults; writes reports/<run>/.
quickstart: install
	eib run configs/quickstart.yaml

install-test:
	bash scripts/install-system-deps.sh
	$(PIP) -e '.[test]'

# Installs what the tests need, lints (ruff, configured in pyproject.toml) and runs them (.ci/run calls exactly this).
test: install-test
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# The fast tier (under 5 minutes here): unit tests only; `make test` is the whole suite, and what CI runs.
test-fast:
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "not slow and not farm and not integration"
