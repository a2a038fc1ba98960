"""The Markdown report of `sae eval`, written from the JSON result alone (so it can be rebuilt from eval.json).

Distances are named as they are computed: "FID" appears only on the Inception row; the cheap distances are
"FD-factor" and "FD-randconv". Every section carries the data label ("procedural" for this package's 3D-Shapes).
"""

from __future__ import annotations

from typing import Any

__all__ = ["markdown_report"]

DISTANCES = ("FID", "FD-factor", "FD-randconv")


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _reconstruction(rec: dict[str, Any]) -> list[str]:
    lines = [f"## Reconstruction on the test split ({rec['data_label']})", ""]
    lines += _table(
        ["images", "BCE per image", "BCE per pixel", "MSE per pixel"],
        [[str(rec["images"]), _num(rec["bce_per_image"], 6), _num(rec["bce_per_pixel"]), _num(rec["mse_per_pixel"])]],
    )
    return lines + ["", f"{rec['definition']}.", ""]


def _prior(value: Any) -> str:
    """A prior-sample distance, or "n/a" where the set has no prior (the reason is in the notes)."""
    return _num(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def _sampling(sampling: dict[str, Any]) -> list[str]:
    """How the generated sets were drawn, under the distances they were scored with."""
    bank = f"{sampling['bank_size']} stored training latents" if sampling.get("bank_size") else "the bank"
    lines = [
        f"Hybrid samples: {sampling['hybrid_samples']}, draw mode **{sampling['draw_mode']}** from {bank} "
        f"({sampling['num_variables']} variables). Prior samples: "
        + (
            f"{sampling['prior_samples']}, {sampling['prior']}."
            if sampling["prior_samples"]
            else f"{sampling['prior']}."
        ),
        f"Seeds: {sampling['seeds']} (seed {sampling['seed']}).",
        "",
    ]
    return lines


def _distances(dist: dict[str, Any]) -> list[str]:
    lines = [
        f"## Fréchet distances ({dist['data_label']})",
        "",
        f"Each set is compared with the {dist['reference']}; lower is better. The floor is the distance between "
        "two halves of the real images, i.e. what sampling noise alone gives at half the count.",
        "",
    ]
    rows, notes = [], []
    for name in DISTANCES:
        entry = dist.get(name, {})
        if "status" in entry:
            notes.append(f"- {name}: {entry['status']}.")
            continue
        if not entry:
            continue
        rows.append(
            [
                name,
                f"`{entry['features']}`",
                str(entry["images"]),
                _num(entry["reconstructions"]),
                _num(entry["hybrid_samples"]),
                _prior(entry["prior_samples"]),
                _num(entry["real_vs_real_floor"]),
                "yes" if entry["reference_cached"] else "no",
            ]
        )
        if entry.get("small_sample_note"):
            notes.append(f"- {name}: {entry['small_sample_note']}.")
        if name == "FID":
            net = entry["inception"]
            notes.append(
                f"- FID network: `{net['path']}` (SHA1 `{net['sha1']}`: {net['description']}); "
                f"{entry['preprocessing']}."
            )
        if name == "FD-factor" and entry.get("classifier_heldout_accuracy"):
            acc = ", ".join(f"{k} {v:.2f}" for k, v in entry["classifier_heldout_accuracy"].items())
            notes.append(
                f"- FD-factor: last hidden layer of a factor classifier trained here on "
                f"{entry.get('classifier_train_images', '?')} labelled training images; held-out accuracy "
                f"per factor: {acc}."
            )
        if name == "FD-randconv":
            notes.append(
                "- FD-randconv: a fixed-seed random CNN; ranks degradations but weakly, depends on seed and "
                "architecture: read it beside trained features."
            )
    lines += _table(
        [
            "distance",
            "features",
            "images",
            "reconstructions",
            "hybrid samples",
            "prior samples",
            "real-vs-real floor",
            "reference cached",
        ],
        rows,
    )
    return lines + [""] + notes + [f"- Prior samples: {dist['prior_samples']}.", ""]


def _disentanglement(dis: dict[str, Any]) -> list[str]:
    if "status" in dis:
        return ["## Disentanglement", "", f"{dis['status']}.", ""]
    lines = [
        f"## Disentanglement ({dis['data_label']})",
        "",
        f"Encodings of {dis['train_codes']} training and {dis['test_codes']} test images against the "
        f"ground-truth factors ({', '.join(dis['factors'])}).",
        "",
    ]
    rows = []
    for key in ("dci_gbt", "dci_lasso"):
        entry = dis[key]
        if "status" in entry:
            rows.append([f"DCI ({key.removeprefix('dci_')})", entry["status"], "", ""])
        else:
            rows.append(
                [
                    entry["label"],
                    _num(entry["disentanglement"]),
                    _num(entry["completeness"]),
                    _num(entry["informativeness_test"]) + f" ({entry['informativeness_kind']})",
                ]
            )
    lines += _table(["DCI", "disentanglement", "completeness", "informativeness (test)"], rows) + [""]
    summary = dis["summary"]
    lines += _table(
        ["MIG", "IRS", "modularity", "explicitness (test)", "SAP"],
        [
            [
                _num(summary["mig"]),
                _num(summary["irs"]),
                _num(summary["modularity"]),
                _num(summary["explicitness_test"]),
                _num(summary["sap"]),
            ]
        ],
    )
    return lines + [""]


def _figures(figs: dict[str, Any]) -> list[str]:
    lines = ["## Figures", ""]
    titles = {
        "hybrid_samples": "Hybrid samples",
        "prior_samples": "Prior samples",
        "reconstructions": "Reconstructions",
        "traversals": "Latent traversals",
        "hybridised_chunks": "Hybridised chunks",
    }
    for key, title in titles.items():
        fig = figs.get(key)
        if not fig:
            continue
        lines += [f"### {title}", "", f"![{title}]({fig['path']})", ""]
        detail = "; ".join(str(fig[k]) for k in ("layout", "drawn_by") if k in fig)
        if detail:
            lines += [f"{detail[0].upper()}{detail[1:]}.", ""]
    return lines


def markdown_report(result: dict[str, Any]) -> str:
    data = result["data"]
    model = f"`{result['model']}`" if result["model"] else "the unprefixed model set"
    lines = [
        f"# Evaluation of {model} at {result['url']}",
        "",
        f"Data: `{data['path']}` ({data['images']} images of {data['image_size']}x{data['image_size']}), "
        f"label **{data['label']}**. Mode: {'fast' if result['fast'] else 'full'}, seed {result['seed']}.",
        "",
    ]
    if data.get("note"):
        lines += [f"> {data['note']}.", ""]
    lines += _reconstruction(result["reconstruction"])
    lines += _distances(result["distances"])
    if result.get("sampling"):
        lines += _sampling(result["sampling"])
    lines += _disentanglement(result["disentanglement"])
    lines += _figures(result.get("figures", {}))
    seconds = result.get("seconds", {})
    rows = [[k, _num(v)] for k, v in seconds.items() if not isinstance(v, dict)]
    rows += [[f"features: {k}", _num(v)] for k, v in seconds.get("features", {}).items()]
    lines += ["## Time (seconds)", ""] + _table(["stage", "seconds"], rows) + [""]
    return "\n".join(lines)
