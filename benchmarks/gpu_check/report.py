"""The GPU check's targets, judged from its report, and the markdown table written beside the JSON."""

from __future__ import annotations

TARGETS = (  # (key, what, comparison, bound)
    ("train_images_per_s", "training throughput (img/s), best of eager and compiled", ">=", 10_000.0),
    ("served_hybrid_b256_samples_per_s", "served hybrid_sample b256, best concurrency (samples/s)", ">=", 50_000.0),
    ("hybrid_b1_p50_ms", "served hybrid_sample b1 p50 (ms)", "<=", 2.0),
)


def _best(cells: list[dict], key: str, better=max, **match) -> float | None:
    values = [c[key] for c in cells if all(c.get(k) == v for k, v in match.items()) and c.get(key) is not None]
    return better(values) if values else None


def target_values(report: dict) -> dict[str, float | None]:
    served = report["served"]["cells"]
    return {
        "train_images_per_s": _best(report["train"], "images_per_second"),
        "served_hybrid_b256_samples_per_s": _best(served, "items_per_s", path="hybrid_sample", batch_size=256),
        "hybrid_b1_p50_ms": _best(served, "p50_ms", min, path="hybrid_sample", batch_size=1, concurrency=1),
    }


def judge_targets(report: dict) -> list[dict]:
    values = target_values(report)
    out = []
    for key, what, op, bound in TARGETS:
        value = values[key]
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        out.append({"target": key, "what": what, "bound": f"{op} {bound:g}", "value": value, "met": met})
    return out


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def markdown(report: dict) -> str:
    info = report["device_info"]
    lines = [
        f"# GPU check ({report['mode']}, {info['gpu'] or 'CPU'})",
        "",
        f"torch {report['versions']['torch']}, onnxruntime {report['versions']['onnxruntime']}, "
        f"driver {info['gpu_driver'] or '-'}; {report['wall_s']:.0f} s",
        "",
        "| target | bound | measured | met |",
        "| --- | --- | --- | --- |",
    ]
    for t in report["targets"]:
        met = "n/a (not measured)" if t["met"] is None else ("met" if t["met"] else "not met")
        lines.append(f"| {t['what']} | {t['bound']} | {_num(t['value'])} | {met} |")
    lines += [
        "",
        "| section | mode | path | batch | conc | p50 ms | p90 ms | items/s | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in report["train"]:
        mode = "compiled" if t["compile"] else "eager"
        lines.append(
            f"| train | {mode} | {t['config']} | {t['batch_size']} | - | - | - | "
            f"{_num(t.get('images_per_second'))} | {t.get('skipped') or t.get('error') or ''} |"
        )
    for section in ("in_process", "served"):
        cells = report[section] if section == "in_process" else report[section]["cells"]
        for c in cells:
            lines.append(
                f"| {section} | {c.get('mode', 'triton')} | {c['path']} | {c['batch_size']} | "
                f"{c.get('concurrency', 1)} | {_num(c.get('p50_ms'))} | {_num(c.get('p90_ms'))} | "
                f"{_num(c.get('items_per_s'))} | {c.get('skipped') or c.get('error') or ''} |"
            )
    served = report["served"]
    if served.get("skipped") or served.get("error"):
        lines.append(f"\nserved: {served.get('skipped') or served.get('error')}")
    return "\n".join(lines) + "\n"
