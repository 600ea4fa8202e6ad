# Two commands for a fresh machine: `make up` runs the platform, `make test` runs the tests.
# Both bootstrap the pinned toolchain (.tools) and the locked virtual environment (.venv).
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv
# Test processes in parallel (pytest-xdist); 0 runs everything in this process.
TEST_WORKERS ?= 2
# The dependencies are compiled to bytecode once, when they are installed: with
# PYTHONDONTWRITEBYTECODE set (as container images often do) every `tresen` and test process
# would otherwise compile SQLAlchemy, pydantic & co. from source again, a second each.
export UV_COMPILE_BYTECODE := 1

.PHONY: up test lint venv web clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

venv: .venv/.synced

# The customer web app (web/): TypeScript built with npm into the relay's package, which serves
# it at /app. Node.js and npm come from the distribution (apt-get install -y nodejs npm).
WEB_DIST := src/tresen/relay/webapp/dist/index.html
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html \
	web/vite.config.ts web/tsconfig.json

web/node_modules/.installed: web/package.json web/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "The web app needs Node.js 20 and npm:" \
		"apt-get install -y nodejs npm" >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_DIST): web/node_modules/.installed $(WEB_SOURCES)
	cd web && npm run --silent build

web: $(WEB_DIST)

up: .venv/.synced web
	.venv/bin/tresen up

# The tests keep the bytecode of src/ and of the assertion-rewritten tests (in __pycache__/,
# ignored by git) even where PYTHONDONTWRITEBYTECODE is set: the test workers and the hundreds
# of `python -m tresen` child processes then compile each module once, not each time.
test: .venv/.synced web
	cd web && npm test --silent
	env -u PYTHONDONTWRITEBYTECODE .venv/bin/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: .venv/.synced web/node_modules/.installed
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy
	.venv/bin/lint-imports
	cd web && npx tsc --noEmit

clean:
	rm -rf .venv .tools web/node_modules src/tresen/relay/webapp/dist
