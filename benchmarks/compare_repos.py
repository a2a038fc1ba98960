"""Two model repositories served side by side and measured in one run: before/after a change to the serving code.

    python benchmarks/compare_repos.py --repo out/bench/before --repo out/bench/after --out out/bench/compare.json
    python benchmarks/compare_repos.py --run RUN --before-commit main~3 --out out/bench/compare.json

With ``--run`` and ``--before-commit`` the two repositories are exported here from the same checkpoint: "before"
with the code of that commit (a temporary git worktree), "after" with this checkout's. One Triton server per
repository runs for the whole comparison (the idle one costs nothing); `sae.serving.bench.compare` alternates between
them path by path. Writes the JSON and a markdown table (``.md``) that states each target met or not.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from sae.serving.bench.compare import Side, markdown, run_compare, write_compare  # noqa: E402
from sae.serving.bench.config import BenchConfig, CellLimits, parse_int_list  # noqa: E402


def export_at_commit(commit: str, run: Path, repo: Path) -> None:
    """``sae export RUN --repo REPO`` with the code of ``commit`` (checked out into a temporary worktree)."""
    with tempfile.TemporaryDirectory(prefix="sae-before-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit],
            check=True,
            capture_output=True,
            text=True,
        )
        try:
            entry = "sae.cli" if (tree / "sae" / "cli").is_dir() else "serving.cli"  # the layout before sae.*
            code = (
                f"import sys; sys.path.insert(0, sys.argv[1]); from {entry} import main; "
                "sys.exit(main(['export', sys.argv[2], '--repo', sys.argv[3]]))"
            )
            subprocess.run(
                [sys.executable, "-c", code, str(tree), str(run.resolve()), str(repo.resolve())], cwd=tree, check=True
            )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False, capture_output=True
            )


def export_here(run: Path, repo: Path) -> None:
    from sae.export.model_set import export_run

    export_run(run, repo)


def add_repo_options(p: argparse.ArgumentParser, repo_help: str, label_help: str, work: Path) -> None:
    """The repositories to compare: ``--repo`` (with ``--label``), or ``--run`` and ``--before-commit`` to export
    them into ``--work`` first."""
    p.add_argument("--repo", type=Path, action="append", default=None, help=repo_help)
    p.add_argument("--label", action="append", default=None, help=label_help)
    p.add_argument("--run", type=Path, default=None, help="a trained run: export the two repositories from it")
    p.add_argument("--before-commit", default=None, help="with --run: the commit whose code exports 'before'")
    p.add_argument("--work", type=Path, default=work, help="where --run's exports go")


def given_or_exported(p: argparse.ArgumentParser, args: argparse.Namespace, run_usage: str) -> list[Path]:
    """The ``--repo`` folders, or with ``--run`` the two exported now: "before" with the code of ``--before-commit``,
    "after" with this checkout's. ``run_usage``: the error for ``--run`` without ``--before-commit`` or with
    ``--repo``."""
    if args.run is None:
        return list(args.repo or [])
    if args.repo or not args.before_commit:
        p.error(run_usage)
    before, after = args.work / "before", args.work / "after"
    for repo in (before, after):
        if repo.exists():
            p.error(f"{repo} exists: remove it or pass the repositories with --repo")
    export_at_commit(args.before_commit, args.run, before)
    export_here(args.run, after)
    return [before, after]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_repo_options(
        p, "a repository (twice or more)", "one per --repo (default: before, after, ...)", Path("out/bench/compare")
    )
    p.add_argument("--model", default="", help="the name the sets were exported under (default: unprefixed)")
    p.add_argument("--out", type=Path, default=Path("out/bench/compare.json"))
    p.add_argument("--batch-sizes", default="1,64")
    p.add_argument("--concurrency", default="1,8")
    p.add_argument("--max-seconds", type=float, default=3.0)
    p.add_argument("--max-requests", type=int, default=200)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args(argv)

    repos = given_or_exported(
        p, args, "--run needs --before-commit and no --repo (the two repositories are exported from the run)"
    )
    if len(repos) < 2:
        p.error(f"give two repositories (--repo A --repo B) or --run with --before-commit; got {len(repos)}")
    missing = [str(r) for r in repos if not r.is_dir()]
    if missing:
        p.error(f"--repo {', '.join(missing)}: not a folder")
    labels = args.label or ["before", "after", *[f"repo{i}" for i in range(3, len(repos) + 1)]][: len(repos)]
    if len(labels) != len(repos):
        p.error(f"{len(labels)} --label for {len(repos)} --repo")
    try:
        grid = BenchConfig(
            url="",
            model=args.model,
            batch_sizes=parse_int_list(args.batch_sizes, "--batch-sizes"),
            concurrency=parse_int_list(args.concurrency, "--concurrency"),
            use_perf_analyzer=False,
            limits=CellLimits(
                max_seconds=args.max_seconds, max_requests=args.max_requests, warmup_requests=args.warmup
            ),
        )
    except ValueError as e:
        p.error(str(e))

    from sae.serving.triton import ServerConfig, TritonServer

    with contextlib.ExitStack() as stack:
        sides = []
        for label, repo in zip(labels, repos):
            log = args.out.parent / f"tritonserver-{label}.log"
            args.out.parent.mkdir(parents=True, exist_ok=True)
            server = stack.enter_context(TritonServer(ServerConfig(repository=repo), log_path=log))
            sides.append(Side(label, replace(grid, url=server.grpc_url, metrics_url=server.metrics_url, repo=repo)))
        result = run_compare(sides, log=lambda line: print(line, file=sys.stderr, flush=True))
    json_path, md_path = write_compare(result, args.out)
    print(markdown(result))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
