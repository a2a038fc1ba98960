"""The GPU check, one package run with ``python -m benchmarks.gpu_check``: its plan, the in-process and served
sections, and the report that judges the targets."""
