# Two commands set everything up: `make demo` and `make test`. Each builds or refreshes the
# virtual environment in $(VENV) when setup.cfg changes, and skips that work when it is current.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.caulk-deps.stamp
RUNTIME_STAMP := $(VENV)/.caulk-runtime.stamp
PYTEST_ARGS ?=
LINT_PATHS := $(wildcard caulk tests benchmarks notebooks docs/make_figures.py docs/make_numbers.py)
FIGURES_ARGS ?=

.PHONY: venv runtime-venv demo test test-slow test-all notebooks lint format docs figures numbers clean

# The runtime deps only (what `make demo` needs); the full set adds the dev, hf and bench extras.
$(RUNTIME_STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	@touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,hf,bench]'
	@touch $(STAMP)

# The deps are keyed on setup.cfg; the editable install of caulk itself is re-pointed whenever the
# venv is shared by another checkout (CI caches the venv outside the clone).
REPOINT = @$(BIN)/python -I -c "import caulk, pathlib, sys; sys.exit(pathlib.Path(caulk.__file__).resolve().parent != pathlib.Path(sys.argv[1]).resolve())" $(CURDIR)/caulk 2>/dev/null \
		|| $(BIN)/python -m pip install -q --no-deps -e .

venv: $(STAMP)
	$(REPOINT)

runtime-venv: $(RUNTIME_STAMP)
	$(REPOINT)

# The demo: zoo backbones (pre-trained on first use, cached in ~/.cache/caulk/zoo) x {linear, lora}
# x n x seeds on digits + an m sweep, then the report (logs/demo/<time>/analysis/report.html).
demo: runtime-venv
	$(BIN)/python -m caulk.demo

# The docs site (mkdocs.yml): every warning is an error (broken links and anchors, pages missing from
# the nav, modules mkdocstrings cannot load). Built into site/ (git-ignored); `mkdocs serve` previews.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

# The docs' demo figures and tables (docs/figures/) from a fresh `python -m caulk.demo` in a temp dir,
# with the machine, threads and command they were measured with. FIGURES_ARGS go to the demo, e.g.
# make figures FIGURES_ARGS="--no-lora curve.seeds=[0]"  (a quick check; the docs quote the full run)
figures: runtime-venv
	$(BIN)/python docs/make_figures.py $(FIGURES_ARGS)

test: venv
	$(BIN)/python -m pytest -m "not slow and not slurm and not ddp" $(PYTEST_ARGS)

test-slow: venv
	$(BIN)/python -m pytest -m "slow or slurm or ddp" $(PYTEST_ARGS)

test-all: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Re-execute the notebooks and save them with their outputs (commit them after editing one).
notebooks: venv
	$(BIN)/python -m tests.notebook_runner

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

format: venv
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

clean:
	rm -rf logs outputs multirun site .pytest_cache .ruff_cache

# The README's and docs' generated figures (<!-- numbers: NAME --> regions) from docs/numbers/*.json.
numbers: venv
	$(BIN)/python docs/make_numbers.py
