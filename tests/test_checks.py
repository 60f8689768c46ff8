"""The shared argument checks (``attnzoo.layers``) and the exact messages of the modules that call them with their
own wording: one helper serves both message formats, and the modules' messages stay what they were."""

import re

import pytest

import attnzoo
from attnzoo.layers import check_choice, check_heads


def test_check_heads_shows_the_width_either_way():
    assert check_heads(4, 16, "M") == 4
    with pytest.raises(ValueError, match=re.escape("M: heads must be a divisor of channels=16, got 3")):
        check_heads(3, 16, "M")
    with pytest.raises(ValueError, match=re.escape("M: heads must be a divisor of the width (16); pass x, got 3")):
        check_heads(3, 16, "M", "the width", "; pass x", paren=True)
    with pytest.raises(ValueError, match=re.escape("M: heads must be a positive integer, got 0")):
        check_heads(0, 16, "M", paren=True)
    with pytest.raises(ValueError, match=re.escape("M: heads must be a divisor of w (0), got 2")):
        check_heads(2, 0, "M", "w", paren=True)  # a width below 1 has no divisor


def test_check_choice_wording_and_bools():
    assert check_choice("b", ("a", "b"), "M", "mode") == "b"
    with pytest.raises(ValueError, match=re.escape("M: mode must be one of 'a', 'b', got 'c'")):
        check_choice("c", ("a", "b"), "M", "mode")
    with pytest.raises(ValueError, match=re.escape("M: mode must be 'a' or 'b', got 'c'")):
        check_choice("c", ("a", "b"), "M", "mode", "'a' or 'b'")
    for flag in (True, False):  # a bool is not the integer 1 or 0 ...
        with pytest.raises(ValueError, match=re.escape(f"M: stride must be one of 0, 1, 2, got {flag}")):
            check_choice(flag, (0, 1, 2), "M", "stride")
    assert check_choice(False, (None, False), "M", "flag") is False  # ... unless it is itself a choice


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("aifi", {"heads": 3}, "AIFI: heads must be a divisor of channels (16), got 3"),
        ("area_attention", {"heads": 3}, "AreaAttention: heads must be a divisor of channels (16); pass heads=, got 3"),
        ("a2c2f", {"heads": 3}, "A2C2f: heads must be a divisor of the hidden width (8), got 3"),
        ("bot_mhsa", {"heads": 3}, "BoTMHSA: heads must be a divisor of out_channels (16), got 3"),
        ("lambda_layer", {"heads": 3}, "LambdaLayer: heads must be a divisor of out_channels (16), got 3"),
        ("psa", {"heads": 3}, "PSA: heads must be a divisor of the attention width (8), got 3"),
        ("bot_mhsa", {"stride": True}, "BoTMHSA: stride must be one of 1, 2, got True"),
        ("ge", {"extent": 2.0}, "GatherExcite: extent must be one of 0, 2, 4, 8, got 2.0"),
        ("lska", {"kernel_size": 9}, "LargeSeparableKernelAttention: kernel_size must be one of the paper's sizes "),
        ("fca", {"freq_sel": "top3"}, "MultiSpectralAttention: freq_sel must be one of top1, top2, "),
    ],
)
def test_module_messages(name, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        attnzoo.create(name, 16, **{**attnzoo.info(name).test_kwargs, **kwargs})


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        (
            "fpn",
            {"extra_levels": "p6"},
            "FeaturePyramidNetwork: extra_levels must be None, 'maxpool' or 'p6p7', got 'p6'",
        ),
        (
            "fpn",
            {"extra_levels": "p6p7", "p6_from": "c4"},
            "FeaturePyramidNetwork: p6_from must be 'c5' or 'p5', got 'c4'",
        ),
        (
            "panet",
            {"extra_levels": "p6p7"},
            "PathAggregationNetwork: extra_levels must be None or 'maxpool', got 'p6p7'",
        ),
    ],
)
def test_neck_messages(name, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        attnzoo.create(name, [8, 16, 32], **{**attnzoo.info(name).test_kwargs, **kwargs})
