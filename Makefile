# Two entry points: `make build` and `make test`. Both (re)create .venv when it is
# missing or older than pyproject.toml, so a fresh clone needs nothing but Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
RECIPE ?= digits

.PHONY: build test test-fast test-families test-arm test-cpus golden lint docs docs-check venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

build: $(STAMP)
	$(VENV)/bin/doit build:$(RECIPE)

lint: $(STAMP)
	$(VENV)/bin/python -m ruff check vitq tests benchmarks dodo.py docs

# The manual (docs/, MkDocs Material): regenerate its generated parts from the code (recipe schema, variant table,
# argument parser), then build it into site/.
docs: $(STAMP)
	$(VENV)/bin/python docs/gen_pages.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# What make test checks of the manual (a few seconds): no generated part stale, no broken link or anchor.
docs-check: $(STAMP)
	$(VENV)/bin/python docs/gen_pages.py --check
	site=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir $$site; \
	status=$$?; rm -rf $$site; exit $$status

# The unit tier: every test that calls vitq's functions directly (no doit subprocesses, no heavy lowering), on two
# workers, one torch thread each (two workers on two cores); the tests that share the in-process tiny build run on one
# worker (tests/conftest.py groups them), so it is built once. Under a minute on 2 cores.
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/python -m pytest -m "not e2e and not heavy and not arm and not cpus" -q -n 2 --dist loadgroup

# The whole suite: lint, the manual (docs-check), the in-process tiers (unit and heavy lowering) on two workers as test-fast runs them, then the
# end-to-end builds one at a time (each doit build already uses both cores; two at once thrash torch's threads).
# Not the eight mobile families: test-families.
test: lint docs-check
	OMP_NUM_THREADS=1 $(VENV)/bin/python -m pytest -m "not e2e and not families and not arm and not cpus" -q -n 2 --dist loadgroup
	$(VENV)/bin/python -m pytest -m "e2e and not families and not arm and not cpus"

# A small member of each mobile ViT family built end to end through doit (about 4 minutes on 2 cores).
test-families: $(STAMP)
	$(VENV)/bin/python -m pytest -m families -q

# vitq verify --arch arm64 on real files: the aarch64 runtimes under emulated ARM CPUs (qemu), a deliberately
# wrong file and a defective emulator. The first run prepares the runtimes under ~/.cache/vitq/runtimes (a few GB).
test-arm: $(STAMP)
	$(VENV)/bin/python -m pytest -m arm -q

# Training bytes as other x86-64 CPU models (qemu-x86_64): an AMD and an Intel CPUID against this host (about 5 minutes).
test-cpus: $(STAMP)
	$(VENV)/bin/python -m pytest -m cpus -q

# Rewrite tests/golden/digits.sha256 (the default release's bytes, which make test compares on every machine) from a
# fresh build of the default recipe and its release. Only after a change meant to change those bytes.
golden: $(STAMP)
	$(VENV)/bin/python tests/test_golden.py

clean:
	rm -rf artifacts site
