"""A run folder others can use: ``RUN/README.md``, a model card, and ``RUN/model.safetensors``, the weights.

The trainer calls ``write_shared_run`` at the end of each ``fit``: it copies the weights of ``checkpoints/last.pt``
to ``model.safetensors`` (with the step, the data and its label, and the commit in the file's metadata) and renders
the card. The card is rendered from what the folder holds: ``config.json``, ``metrics.csv``, the metadata of
``model.safetensors`` and, once ``sae eval`` has written one into the run folder (``--out RUN/eval``), its
``eval.json``; ``refresh_model_card`` renders it again, and `sae eval` calls it. Rendering needs no torch.

"procedural" or "real" is the label the evaluation harness gives data (``is_procedural``): the package's own
procedural 3D-Shapes render is not the real dataset, and scores on it are not comparable with the paper's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sae.core.atomic import write_text_atomic
from sae.core.datasets import open_dataset
from sae.core.version import __version__, git_commit
from sae.training.metrics_log import read_metrics
from sae.training.weights_file import CheckpointError, read_metadata, run_weights, save_safetensors

CARD_FILE = "README.md"
CARD_MARK = "<!-- sae-serving model card"  # near the top of a card this module wrote (and may rewrite)
EVAL_FILE = "eval.json"
KINDS = {
    "sae": "Structural Autoencoder (Leeb et al., ICLR 2023)",
    "ae": "autoencoder",
    "vae": "VAE",
    "betavae": "beta-VAE",
    "betatcvae": "beta-TCVAE",
    "factorvae": "FactorVAE",
    "wae": "Wasserstein autoencoder",
    "adaae": "AdaAE",
    "vlae": "variational ladder autoencoder (VLAE)",
}


def write_shared_run(run_dir: Path, data_source: Any = None) -> Path | None:
    """``model.safetensors`` from ``checkpoints/last.pt`` and the card; None when the run has no checkpoint yet.

    ``data_source``: the training ``ImageSource``, for the procedural/real label (default: the checkpoint's data path).
    """
    from sae.evaluation.harness import is_procedural  # the client's modules: imported when used
    from sae.training.checkpoint import LAST, Checkpoint, run_checkpoint  # torch

    run_dir = Path(run_dir)
    last = run_checkpoint(run_dir, LAST)
    if not last.is_file():
        return None
    ckpt = Checkpoint.load(last)
    data_path = (ckpt.extra or {}).get("data_path", "")
    label = ""
    try:
        source = data_source if data_source is not None else (open_dataset(Path(data_path)) if data_path else None)
        if source is not None:
            label = "procedural" if is_procedural(source) else "real"
    except (OSError, ValueError):  # data moved since training: the card says the label is unknown
        label = ""
    save_safetensors(
        ckpt,
        run_weights(run_dir),
        {"data_label": label, "commit": git_commit() or "", "sae_serving_version": __version__},
    )
    return refresh_model_card(run_dir)


def refresh_model_card(folder: Path, force: bool = False) -> Path | None:
    """Render ``README.md`` of the run folder ``folder`` (or of its parent, for an eval folder inside a run).

    Returns the card's path, or None when neither is a run folder with ``model.safetensors``. An existing
    ``README.md`` that this module did not write (a user's own) is left alone unless ``force``.
    """
    folder = Path(folder)
    for run_dir in (folder, folder.parent):
        if run_weights(run_dir).is_file() and (run_dir / "config.json").is_file():
            card = run_dir / CARD_FILE
            if card.exists() and not force and CARD_MARK not in card.read_text(errors="replace")[:500]:
                return None
            write_text_atomic(card, render_card(run_dir))
            return card
    return None


def _number(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.6g}"
    return str(value)


def _losses(row: dict) -> str:
    return ", ".join(f"{k} {_number(v)}" for k, v in row.items() if k not in ("step", "split", "images_per_second"))


def _evaluation(run_dir: Path) -> tuple[Path, dict] | None:
    """The newest ``eval.json`` in the run folder or one folder below it."""
    found = [p for p in [run_dir / EVAL_FILE, *run_dir.glob(f"*/{EVAL_FILE}")] if p.is_file()]
    if not found:
        return None
    path = max(found, key=lambda p: p.stat().st_mtime)
    try:
        return path, json.loads(path.read_text())
    except (OSError, ValueError):
        return path, {}


def render_card(run_dir: Path) -> str:
    """The card's Markdown, from the run folder's files (no torch)."""
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except ValueError as e:  # a config.json edited by hand
        raise CheckpointError(f"{run_dir / 'config.json'} is not JSON ({e})") from e
    meta = read_metadata(run_weights(run_dir))
    try:
        extra = json.loads(meta.get("extra", "{}") or "{}")
    except ValueError as e:
        raise CheckpointError(f"the metadata of {run_weights(run_dir)} is not readable ({e})") from e
    model, train = config.get("model", {}), config.get("train", {})
    kind = model.get("kind", meta.get("kind", "?"))
    name = config.get("name", meta.get("config_name", "?"))
    step = int(meta.get("step", 0))
    label = meta.get("data_label", "")
    rows = read_metrics(run_dir)
    last_train = next((r for r in reversed(rows) if r["split"] == "train"), None)
    vals = [r for r in rows if r["split"] == "val" and isinstance(r.get("loss"), (int, float))]
    commit = meta.get("commit", "")
    final = f"{_losses(last_train)} (step {last_train['step']})" if last_train else "none logged"

    data = f"`{config.get('dataset', '?')}`"
    if extra.get("data_path"):
        data += f" from `{extra['data_path']}`"
    if extra.get("exclude"):
        data += f", excluding {extra['exclude']}"
    label_text = {
        "procedural": "**procedural**: 3D-Shapes rendered by this package, not the real dataset; its scores "
        "are not comparable with the paper's",
        "real": "**real**",
    }.get(label, "unknown (the data was not found when the card was written)")
    lines = [
        "---",  # the metadata block model hubs read first
        "library_name: sae-serving",
        f"tags: [autoencoder, disentanglement, {kind}]",
        "---",
        f"{CARD_MARK}: written by `sae train` and `sae eval`; edits are overwritten -->",
        "",
        f"# {name}: {KINDS.get(kind, kind)}",
        "",
        f"A `{kind}` model trained with sae-serving {meta.get('sae_serving_version', __version__)}.",
        "",
        "| | |",
        "|---|---|",
        f"| kind | `{kind}`: {KINDS.get(kind, kind)}; latent dimension {model.get('latent_dim', '?')} |",
        f"| config | `{name}` (every field: [config.json](config.json)) |",
        f"| data | {data} |",
        f"| data label | {label_text} |",
        f"| steps | {step:,} (the config's schedule: {int(train.get('steps', step)):,}), batch "
        f"{train.get('batch_size', '?')}, lr {train.get('lr', '?')}, seed {train.get('seed', '?')} |",
        f"| final training losses | {final} |",
    ]
    if vals:
        best = min(vals, key=lambda r: r["loss"])
        lines.append(
            f"| validation loss | {_number(vals[-1]['loss'])} at step {vals[-1]['step']}; best "
            f"{_number(best['loss'])} at step {best['step']} |"
        )
    lines += [f"| commit | {f'`{commit}`' if commit else 'not trained from a git checkout'} |", ""]

    lines += ["## Evaluation", ""]
    evaluation = _evaluation(run_dir)
    if evaluation is None:
        lines.append(
            "Not evaluated yet: `sae eval --data DATA --model NAME --out RUN/eval` against the exported, "
            "served model adds its headline metrics here."
        )
    else:
        from sae.evaluation.harness import summary_lines

        path, result = evaluation
        where = path.relative_to(run_dir)
        try:
            headline = summary_lines(result)
        except (KeyError, TypeError, ValueError):
            headline = []
        if headline:
            lines.append(f"From [{where}]({where}) (`sae eval`, model `{result.get('model') or '(unprefixed)'}`):")
            lines += [""] + [f"- {line}" for line in headline]
        else:
            lines.append(f"[{where}]({where}) is incomplete or unreadable: run `sae eval` again.")
    lines += [
        "",
        "## Files",
        "",
        "- `model.safetensors`: the weights at the step above (safetensors; the step, data, commit in its metadata).",
        "- `config.json`: the config; `metrics.csv`, `loss_curve.png`, `tensorboard/`: the training curves.",
        "- `checkpoints/last.pt`, `best.pt`: full checkpoints with optimiser state, to resume training.",
        "",
        "## Use",
        "",
        "```python",
        "from sae import load_model",
        'model = load_model("RUN")  # checkpoints/last.pt, or model.safetensors with config.json',
        "```",
        "",
        "`sae export RUN --repo model_repository` serves it with Triton; either weights file will do.",
        "",
    ]
    return "\n".join(lines)
