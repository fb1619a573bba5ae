"""The HTML report: one self-contained file with a section and a plot for each kind of result."""

from __future__ import annotations

import base64
import re

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_html_report_from_every_kind_has_every_section_and_embedded_images(full_report):
    out = full_report
    page = out.read_text()
    for title in (
        "Summary",
        "Runs",
        "Robust accuracy",
        "Label leaking",
        "Gradient-masking checks",
        "Training: fgsm-run (incomplete)",
        "Fast versus multi-step adversarial training: cost and robustness",
        "Transferability: transfer",
        "Capacity: sweep",
        "Configuration and environment",
    ):
        assert f">{title}</h2>" in page, title
    srcs = re.findall(r'<img alt="([^"]*)" src="([^"]*)"', page)
    assert {alt for alt, _ in srcs} == {
        "Accuracy against ε per attack",
        "Worst-case robust accuracy against training time (filled: Pareto front)",
        "Training curves of fgsm-run (incomplete), per epoch",
        "Robust accuracy against training time",
        "transfer rate, fgsm, ε=8/255",
        "Ratio against model.kwargs.width",
    }
    for _, src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    # Self-contained: nothing is fetched from anywhere.
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert "http://" not in page and "https://" not in page
    assert "hardened: label leaking detected." in page
    # What the numbers came from, and what failed.
    assert "catastrophic_overfit at epoch 3" in page
    assert "Failed: variant kurakin, model.kwargs.width=2.0: RuntimeError: boom" in page
    assert "Failed: method=fgsm, mode=lora, eps=8/255: BackboneError: no LoRA target" in page
    assert "multi-step minus fast method" in page and "robust gap (points)" in page
    assert "&quot;recipe&quot;" in page and "torch_threads" in page
    # The Markdown version with the same plots as files is written beside it.
    md = out.with_suffix(".md").read_text()
    assert md.count("](report_") == len(srcs)
    for name in re.findall(r"\]\((report_[^)]+\.png)\)", md):
        assert (out.parent / name).read_bytes().startswith(PNG_MAGIC)


def test_html_escapes_what_the_results_contain(tmp_path):
    from advscale.report import write_html_report
    from advscale.results import Results

    res = Results("eval", config={"model": "<script>alert(1)</script>"})
    res.add(attack="fgsm", eps=8, accuracy=0.5)
    page = write_html_report([res], tmp_path / "r.html", markdown=False).read_text()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not (tmp_path / "r.md").exists()
