# The quick start's two commands are `make run` and `make test`; both install what is missing first.
.PHONY: bootstrap run test lint format bench screenshots

bootstrap:
	@bash .ci/bootstrap

run: bootstrap
	.venv/bin/mutt run

# One pytest worker per core, each taking whole test files (module fixtures stay in one process).
test: bootstrap
	.venv/bin/pytest -n auto --dist loadfile

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports

format: bootstrap
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

# The README's pictures of the admin UI, taken by the browser tests (headless Chromium).
screenshots: bootstrap
	MUTT_SCREENSHOTS=docs/screenshots .venv/bin/pytest tests/browser -q
