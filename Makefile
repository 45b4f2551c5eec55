# The two commands of the README. Both create .venv and install what they need first (scripts/setup.sh).
PY := .venv/bin/python

.PHONY: demo test test-slow setup bench lint check-verl check-openrlhf

setup:
	./scripts/setup.sh test

# The main job on an embedded default: a small robustness study (PPO, the scaled-PPO control, SPPO and SPPO without
# the mask on CartPole-v1, clean and with noisy rewards, 10 seeds; a sweep: re-running skips what is done), then the
# scores, the robustness verdicts and the report.
demo: setup
	.venv/bin/symrl demo --out runs/demo

# The default test suite (well under 10 minutes on 2 cores).
test: setup
	$(PY) -m pytest -q

# Longer learning runs, marked slow.
test-slow: setup
	$(PY) -m pytest -q -m slow

# ruff over the library, tests, benchmarks and examples (rules in pyproject.toml).
lint:
	./scripts/setup.sh test,dev
	.venv/bin/ruff check symrl tests benchmarks examples

# symrl vs Stable-Baselines3 side by side (installs the benchmark-only extras: SB3 and EnvPool).
bench:
	./scripts/setup.sh test,bench
	$(PY) benchmarks/bench_vs_sb3.py

# symrl's veRL and OpenRLHF plug-ins against the real packages, each in an environment of its own (they pin versions
# the main environment cannot share); CPU only, a few minutes each the first time (docs/integrations/verl-openrlhf.md).
check-verl:
	bash benchmarks/setup_verl.sh
	.venv-verl/bin/python benchmarks/check_verl.py

check-openrlhf:
	bash benchmarks/setup_openrlhf.sh
	.venv-openrlhf/bin/python benchmarks/check_openrlhf.py
