"""Accuracy-vs-GFLOPs figure from synthetic run records and reference rows."""

import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
from PIL import Image

from vidtldr.report.plots import accuracy_points, plot_accuracy_vs_gflops

REPO = Path(__file__).resolve().parent.parent


def _run(dataset, method, gflops, created, partial=False, **metrics):
    return {"setting": "finetuned", "dataset": dataset, "backbone": "umt_b", "method": method,
            "gflops": gflops, "created": created, "partial": partial, "path": f"runs/{dataset}/{method}/{created}",
            **metrics}


def _ref(rows):
    return pd.DataFrame([{"table": t, "setting": "finetuned", "dataset": d, "backbone": "umt_b", "method": m,
                          "metric": k, "value": v, "provenance": "test", "note": ""} for t, d, m, k, v in rows])


RUNS = pd.DataFrame([
    _run("msrvtt", "none", 303.3, "2024-01-01", t2v_r1=51.0, v2t_r1=49.0, r1_mean=50.0),
    _run("msrvtt", "vidtldr", 178.0, "2024-01-02", t2v_r1=50.0, v2t_r1=51.0),  # r1_mean derived
    # a newer partial run must not replace the complete one; an older complete one must
    _run("msrvtt", "tome", 231.4, "2024-01-05", partial=True, r1_mean=10.0),
    _run("msrvtt", "tome", 231.4, "2024-01-03", r1_mean=47.5),
    _run("msrvtt", "tome", 231.4, "2023-12-01", r1_mean=1.0),
    _run("msvd_qa", "vidtldr", 188.5, "2024-01-04", partial=True, acc=49.0),
    _run("msrvtt", "vidtldr", 178.0, "2024-01-09", r1_mean=99.0) | {"backbone": "umt_l"},  # other backbone
])
REF = _ref([
    ("fig1", "msrvtt", "none", "r1_mean", 50.0), ("fig1", "msrvtt", "none", "gflops", 303.3),
    ("fig1", "msrvtt", "vidtldr", "r1_mean", 50.8), ("fig1", "msrvtt", "vidtldr", "gflops", 178.0),
    ("fig1", "msvd_qa", "vidtldr", "acc", 49.4), ("fig1", "msvd_qa", "vidtldr", "gflops", 188.5),
    # not in Figure 1: R@1 averaged from the per-setting table, GFLOPs from the recount table
    ("finetuned", "didemo", "vidtldr", "t2v_r1", 60.0), ("finetuned", "didemo", "vidtldr", "v2t_r1", 62.0),
    ("gflops", "didemo", "vidtldr", "gflops", 212.8),
])


def _point(points, dataset, method, source):
    hit = points[(points.dataset == dataset) & (points.method == method) & (points.source == source)]
    assert len(hit) == 1, (dataset, method, source, hit)
    return hit.iloc[0]


def test_points_pick_the_right_runs_and_reference_values():
    pts = accuracy_points(RUNS, REF, ["msrvtt", "msvd_qa", "didemo"])
    assert _point(pts, "msrvtt", "none", "ours")[["accuracy", "gflops"]].tolist() == [50.0, 303.3]
    assert _point(pts, "msrvtt", "vidtldr", "ours").accuracy == 50.5  # mean of T2V/V2T R@1
    tome = _point(pts, "msrvtt", "tome", "ours")
    assert tome.accuracy == 47.5 and not tome.partial  # complete beats a newer partial
    qa = _point(pts, "msvd_qa", "vidtldr", "ours")
    assert qa.metric == "acc" and qa.accuracy == 49.0 and qa.partial  # a partial run is kept, marked
    assert _point(pts, "msrvtt", "vidtldr", "paper")[["accuracy", "gflops"]].tolist() == [50.8, 178.0]
    assert _point(pts, "didemo", "vidtldr", "paper")[["accuracy", "gflops"]].tolist() == [61.0, 212.8]
    # no paper ToMe point for msrvtt in this reference, and nothing is invented for didemo runs
    assert pts[(pts.dataset == "msrvtt") & (pts.method == "tome") & (pts.source == "paper")].empty
    assert pts[(pts.dataset == "didemo") & (pts.source == "ours")].empty
    assert set(pts.source) == {"ours", "paper"} and len(pts) == 8


def test_plot_writes_png_and_svg(tmp_path):
    out = plot_accuracy_vs_gflops(RUNS, REF, tmp_path / "fig1", datasets=["msrvtt", "msvd_qa", "didemo"],
                                  title="UMT-B test figure")
    assert out["png"] == tmp_path / "fig1.png" and out["svg"] == tmp_path / "fig1.svg"
    with Image.open(out["png"]) as img:
        assert img.format == "PNG" and img.size == (round(3 * 3.3 * 120), round((2.7 + 0.8) * 120))
    svg = out["svg"].read_text()
    ET.fromstring(svg)  # well-formed
    for text in ("MSRVTT", "MSVD-QA", "DiDeMo", "no run", "vid-TLDR", "ToMe", "partial run", "UMT-B test figure"):
        assert text in svg
    again = plot_accuracy_vs_gflops(RUNS, REF, tmp_path / "again", datasets=["msrvtt", "msvd_qa", "didemo"],
                                    title="UMT-B test figure")
    assert again["svg"].read_text() == svg  # deterministic, so committed figures diff cleanly
    assert not list(tmp_path.glob("*.tmp*"))


def test_empty_runs_still_show_the_paper_figure1(tmp_path):
    from vidtldr.report.reference import load_reference

    ref = load_reference(REPO / "vidtldr" / "report" / "paper_reference.csv")
    datasets = ["msrvtt", "msvd", "anet", "didemo", "lsmdc", "ssv2_label", "ssv2_template", "msrvtt_qa", "msvd_qa"]
    out = plot_accuracy_vs_gflops(pd.DataFrame(), ref, tmp_path / "fig1", datasets=datasets)
    pts = out["points"]
    assert (pts.source == "paper").all() and len(pts) == 27  # base, ToMe, vid-TLDR for 9 tasks
    assert _point(pts, "msrvtt", "tome", "paper")[["accuracy", "gflops"]].tolist() == [47.0, 231.4]
    assert _point(pts, "msvd_qa", "none", "paper")[["accuracy", "gflops"]].tolist() == [49.5, 303.3]
    assert out["svg"].read_text().count("no run") == 9


def test_table_builder_writes_the_fig1_figure(tmp_path):
    from vidtldr.report import results

    written = results.build_all([tmp_path / "no_runs"], tmp_path / "out", tables=["fig1"])
    assert written["fig1"]["png"] == tmp_path / "out" / "fig1.png"
    with Image.open(written["fig1"]["png"]) as img:
        assert img.format == "PNG"
    svg = written["fig1"]["svg"].read_text()
    assert "SSv2-template" in svg and "MSVD-QA" in svg and svg.count("no run") == 9
