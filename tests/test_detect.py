"""Detection across rules: negative controls stay silent, --select/--ignore, and what a check
reads. Each rule's own positives and negatives are in tests/rules/test_<code>_<name>.py; the
round trip over every rule's manglers (detection included) is tests/rules/test_round_trip.py."""

from __future__ import annotations

import pytest

import sepfix
from sepfix.testing import builders
from tests.rules.test_sep001_dense_depthwise import dense_depthwise
from tests.rules.test_sep008_detached_bias import detached_bias


@pytest.mark.parametrize(
    "builder",
    ["resnext_grouped", "dense_with_zeros", "repvgg_kernel", "convnext_linear", "weight_graph_input", "qdq_weights"],
)
def test_negative_controls_stay_silent(builder):
    model = getattr(builders, builder)()
    assert sepfix.check(model) == []


def test_select_and_ignore_by_prefix():
    model = detached_bias(dense_depthwise(builders.mobilenet_like()))
    # SEP008's plain bias Add is info (ONNX Runtime folds it): shown with advice
    assert {f.code for f in sepfix.check(model)} == {"SEP001"}
    assert {f.code for f in sepfix.check(model, advice=True) if f.code.startswith("SEP")} == {"SEP001", "SEP008"}
    assert {f.code for f in sepfix.check(model, select=["SEP001"])} == {"SEP001"}
    assert {f.code for f in sepfix.check(model, ignore=["SEP00"])} == set()
    assert {f.code for f in sepfix.check(model, select=["detached-bias"], advice=True)} == {"SEP008"}
    with pytest.raises(sepfix.SepfixError):
        sepfix.check(model, select=["XYZ9"])


def test_check_reads_only_the_weights_it_inspects(tmp_path):
    """On an external-data model, a clean check reads a few hundred bytes of weights at most;
    a dense-depthwise candidate is read because it must be inspected."""
    import numpy as np
    import onnx

    from sepfix import model_io
    from sepfix.checker import check_loaded
    from sepfix.rules import select_rules

    clean = builders.mobilenet_like(channels=(32, 64, 64))
    for name, model in (("clean", clean), ("dense", dense_depthwise(clean, nodes=["block1_dw_conv"]))):
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, path, save_as_external_data=True, location=f"{name}.data", size_threshold=0)
        total = (tmp_path / f"{name}.data").stat().st_size
        loaded = model_io.load_for_check(path)
        result = check_loaded(loaded, select_rules(), str(path))
        if name == "clean":
            assert result.findings == [] and loaded.bytes_read < 1024, loaded.bytes_read
        else:
            conv = next(n for n in model.graph.node if n.name == "block1_dw_conv")
            weight = next(t for t in model.graph.initializer if t.name == conv.input[1])
            dense_bytes = 4 * int(np.prod(weight.dims))
            assert [f.code for f in result.findings] == ["SEP001"]
            assert dense_bytes <= loaded.bytes_read < dense_bytes + 4096 < total
