# The two commands of the README. Both create .venv and install what they need first (scripts/setup.sh).
PY := .venv/bin/python

.PHONY: demo test test-slow setup bench

setup:
	./scripts/setup.sh test

# The main job on an embedded default: SPPO on CartPole-v1 with noisy rewards, then evaluate the saved agent.
demo: setup
	.venv/bin/symrl train --algo sppo --env CartPole-v1 --steps 60000 --reward-noise gaussian:0.1 --out runs/demo --overwrite
	.venv/bin/symrl eval runs/demo --episodes 10

# The default test suite (well under 10 minutes on 2 cores).
test: setup
	$(PY) -m pytest -q

# Longer learning runs, marked slow.
test-slow: setup
	$(PY) -m pytest -q -m slow

# symrl vs Stable-Baselines3 side by side (installs the benchmark-only extras: SB3 and EnvPool).
bench:
	./scripts/setup.sh test,bench
	$(PY) benchmarks/bench_vs_sb3.py
