"""The paper's words for each claim (``QUOTES``, shown beside its verdict) and the builder that makes a claim's
``ClaimResult`` of its parts: the verdict combined from the parts, the numbers with the tally of comparisons, the
quote attached."""

from __future__ import annotations

from collections.abc import Sequence

from sae.experiment.comparisons import ClaimResult, Part, Verdict, _parts_text, _single_seed, _tally, combine_parts

__all__ = ["QUOTES"]

QUOTES = {
    "C1": "“SAE … consistently outperforms the baseline methods”; “unregularized methods like the SAE, AdaAE, and AE "
    "tend to have significantly better reconstruction quality. However, … SAE and VLAE show improved results "
    "compared to their unstructured counterparts.” (figure 2; figure 8 puts WAE with the reconstruction-only "
    "models)",
    "C2": "“the SAE models perform significantly better than the baselines” (hybrid-sample FID, figure 3)",
    "C3": "“Even the regularized models such as VLAE, FVAEs, and VAEs consistently generate higher quality samples "
    "using the hybrid sampling” (figures 3, 6b)",
    "C4": "“Both hierarchical methods, SAE-12 and the VLAE-12, outperform all other baselines, and in particular the "
    "SAE performs well, despite the lack of regularization”; “the AdaAE does not disentangle” (figure 5)",
    "C5": "“higher level, nonlinear features (like shape and orientation) are encoded in the first few dimensions … "
    "followed by … color”; “Somewhat surprisingly, the SAE-12 even learns to compact the representation by "
    "ignoring superfluous latent variables” (figure 4, A.3.1)",
    "C6": "“significantly better when updating the decoder than the encoder … almost indistinguishable from … both”; "
    "“SAE-12 generally outperforms all variational baselines”; figure 12: “much better … than the VLAE-12” "
    "(section 3.2, figures 7 and 12, A.3.3)",
}


def _claim(
    claim_id: str,
    statement: str,
    rule: str,
    numbers: str,
    parts: Sequence[Part],
    verdict: Verdict | None = None,
    details: Sequence[str] = (),
) -> ClaimResult:
    comparisons = tuple(c for p in parts for c in p.comparisons)
    numbers = f"{numbers}. {_tally(comparisons)}. {_parts_text(parts)}"
    return ClaimResult(
        claim_id,
        statement,
        rule,
        numbers,
        verdict or combine_parts(parts),
        comparisons,
        _single_seed(comparisons),
        tuple(details),
        QUOTES[claim_id],
        tuple(parts),
    )
