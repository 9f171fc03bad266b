# The quick start's two commands are `make run` and `make test`; both install what is missing first.
.PHONY: bootstrap run test lint format bench

bootstrap:
	@bash .ci/bootstrap

run: bootstrap
	.venv/bin/mutt run

test: bootstrap
	.venv/bin/pytest

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: bootstrap
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .
