# The two commands of the README's Quick start.
PY ?= python3
PIP = $(PY) -m pip install --disable-pip-version-check -q

.PHONY: quickstart install test install-test

install:
	$(PIP) -e .

# Installs everything and runs the main job on the embedded defaults; writes reports/<run>/.
quickstart: install
	eib run configs/quickstart.yaml

install-test:
	bash scripts/install-system-deps.sh
	$(PIP) -e '.[test]'

# Installs what the tests need and runs them (.ci/run calls exactly this).
test: install-test
	$(PY) -m pytest -q
