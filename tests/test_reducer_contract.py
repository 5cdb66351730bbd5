"""The reducer contract: self-description (need, match_on, tracks_sizes), discovery without a list,
and FLOPs derived from the description, never from the name."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from vidtldr.cost.vision import ReducerTraits, backbone_vision_dims, reducer_cost, vision_cost
from vidtldr.errors import ConfigError
from vidtldr.reduce import build_reducer, reducer_class
from vidtldr.reduce.base import REDUCERS, ReductionState, Reducer, apply_merge, check_contract, register_reducer


def test_discovery_imports_every_reducer_module_in_a_fresh_interpreter():
    code = ("from vidtldr.reduce import discover_reducers; import sys; "
            "print(sorted(discover_reducers())); print(sorted(m for m in sys.modules if m.startswith('vidtldr.reduce.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert eval(out[0]) == ["divprune", "fastv", "none", "pitome", "random", "random_merge", "repshift", "rlt",
                            "tome", "vidtldr", "visionzip"]
    assert {"vidtldr.reduce.tome", "vidtldr.reduce.random_drop", "vidtldr.reduce.vidtldr"} <= set(eval(out[1]))


@pytest.mark.parametrize("name, need, match_on, sizes", [
    ("none", None, None, False), ("vidtldr", "neg_entropy", "hidden", True), ("tome", "keys", "keys", True),
    ("random", None, None, False), ("repshift", "update", "hidden", True),
    ("random_merge", "keys", "keys", True), ("fastv", "attn", None, False), ("divprune", None, "hidden", False),
    ("visionzip", "attn", "hidden", True), ("pitome", "keys", "keys", True), ("rlt", None, None, False)])
def test_builtin_reducers_describe_themselves(name, need, match_on, sizes):
    cls = reducer_class(name)
    assert (cls.need, cls.match_on, cls.tracks_sizes) == (need, match_on, sizes)


def test_unknown_reducer_is_a_config_error_listing_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown reducer 'nope'.*'tome'"):
        build_reducer("nope", [1])


def _bad(**attrs):
    return type("Bad", (Reducer,), attrs)


@pytest.mark.parametrize("attrs, message", [
    ({"need": "entropy"}, "need = 'entropy'"),
    ({"match_on": "queries"}, "match_on = 'queries'"),
    ({"match_on": "keys", "need": None}, "match_on = 'keys' needs need = 'keys'"),
    ({"tracks_sizes": 1}, "tracks_sizes = 1"),
    ({"input_level": "yes"}, r"\.Bad\.input_level = 'yes'; expected True or False"),
    ({"stochastic": 1}, r"\.Bad\.stochastic = 1; expected True or False"),
])
def test_contract_violations_are_named(attrs, message):
    with pytest.raises(TypeError, match=message):
        check_contract(_bad(**attrs))
    with pytest.raises(TypeError, match=message):
        register_reducer("bad_for_test")(_bad(**attrs))
    assert "bad_for_test" not in REDUCERS


def test_a_name_cannot_be_taken_twice():
    with pytest.raises(TypeError, match="^reducer name 'tome' is taken by vidtldr.reduce.tome.ToMe"):
        register_reducer("tome")(_bad(need="keys", match_on="keys", tracks_sizes=True))


class _Hidden(Reducer):  # not registered: the cost reads attributes, not names
    need, match_on, tracks_sizes = None, "hidden", True

    def remove(self, x, r, layer, state, aux):
        return x[:, r:]


def test_cost_follows_attributes_not_names():
    vision = backbone_vision_dims("umt_b16")
    sched = [600, 200, 100] + [0] * 9
    vid = reducer_cost(vision, 12, build_reducer("vidtldr", sched))
    hidden = reducer_cost(vision, 12, _Hidden(sched))
    tome = reducer_cost(vision, 12, build_reducer("tome", sched))
    random = reducer_cost(vision, 12, build_reducer("random", sched))
    # a hidden-state matcher pays the C-wide similarity, exactly as vid-TLDR does (178.0 published)
    assert hidden.paper_by_op == vid.paper_by_op and round(vid.gflops_paper, 1) == 178.0
    sim_hidden = 1176 * 1176 * 768 + 876 * 876 * 768 + 776 * 776 * 768
    assert hidden.paper_by_op["match"] == sim_hidden
    assert tome.paper_by_op["match"] == sim_hidden // 12  # head_dim = 64 = 768 / 12
    assert "match" not in random.paper_by_op
    # true FLOPs: only vid-TLDR's need pays the entropy; only size-tracking reducers pay the
    # weighted average and the log(size) bias afterwards. By hand, at T = 2352, 1752, 1552 tokens
    # entering the reducing blocks (r = 600, 200, 100; C = 768, 12 heads of 64):
    tokens_in, removed, tokens_out = (2352, 1752, 1552), (600, 200, 100), (1752, 1552, 1452)
    # head mean of the map (12 T^2) + p ln p summed (3 T^2) + the O(T) normalisation (10 T)
    assert vid.true_by_op["saliency"] == sum(15 * t * t + 10 * t for t in tokens_in) == 165_208_240
    assert "saliency" not in hidden.true_by_op
    # size-weighted average: (T + 2r + U) x (C + 1) = (5304 + 3704 + 3204) x 769
    merge = sum((t + 2 * r + u) * 769 for t, r, u in zip(tokens_in, removed, tokens_out, strict=True))
    assert hidden.true_by_op["merge"] == vid.true_by_op["merge"] == merge == 12212 * 769
    assert "merge" not in random.true_by_op and "size_bias" not in random.true_by_op
    # + log(size) on the 12 x T^2 logits of every block after the first merge: 1752, 1552, then 1452 x 9
    size_bias = 12 * (1752 ** 2 + 1552 ** 2 + 9 * 1452 ** 2)
    assert tome.true_by_op["size_bias"] == vid.true_by_op["size_bias"] == size_bias
    # besides the similarity: the metric's L2 normalisation (3 per element) and (s + 1) / 2 on the
    # ceil(T/2) x floor(T/2) similarities; ToMe also averages the keys over the heads (T x C)
    halves = 1176 * 1176 + 876 * 876 + 776 * 776
    assert vid.true_by_op["match_other"] == 3 * sum(tokens_in) * 768 + 2 * halves
    assert tome.true_by_op["match_other"] == sum(tokens_in) * 768 + 3 * sum(tokens_in) * 64 + 2 * halves
    assert "match_other" not in random.true_by_op


def test_repshift_pays_the_norm_of_its_update_and_nothing_else_extra():
    # repshift = vid-TLDR's matching and merging scored by ||attention update||: against a hidden
    # matcher with sizes and no need, it adds per reducing block 2*T*C (square, accumulate) and
    # 11*T (sqrt + the saliency normalisation), at T = 2352, 1752, 1552 tokens (C = 768)
    vision = backbone_vision_dims("umt_b16")
    sched = [600, 200, 100] + [0] * 9
    shift = reducer_cost(vision, 12, build_reducer("repshift", sched))
    hidden = reducer_cost(vision, 12, _Hidden(sched))
    tokens_in = 2352 + 1752 + 1552
    assert shift.true_by_op["saliency"] == 2 * tokens_in * 768 + 11 * tokens_in
    assert shift.true - hidden.true == shift.true_by_op["saliency"]
    assert shift.paper == hidden.paper  # the paper convention counts no elementwise work


def test_removing_tokens_needs_a_reducer_description():
    vision = backbone_vision_dims("tiny")
    with pytest.raises(ValueError, match="pass the reducer"):
        vision_cost(vision, 4, [10])
    assert vision_cost(vision, 4, [10], reducer=ReducerTraits()).tokens_per_layer[1] == 186


def test_registering_a_new_reducer_names_and_stores_it():
    cls = type("Fresh", (Reducer,), {"need": None, "match_on": None, "tracks_sizes": False,
                                      "remove": lambda self, x, r, layer, state, aux: x[:, r:]})
    try:
        assert register_reducer("fresh_for_test")(cls) is cls
        assert REDUCERS["fresh_for_test"] is cls and cls.name == "fresh_for_test"
        assert reducer_class("fresh_for_test") is cls
    finally:
        REDUCERS.pop("fresh_for_test", None)


def test_only_reducer_classes_can_register():
    with pytest.raises(TypeError, match=r"test_reducer_contract\.NotAReducer: .*must subclass"):
        check_contract(NotAReducer)
    with pytest.raises(TypeError, match=r"^42: a registered reducer must subclass"):
        check_contract(42)
    with pytest.raises(TypeError, match=r"^'tome': a registered reducer must subclass"):
        check_contract("tome")


class NotAReducer:
    need, match_on, tracks_sizes = None, None, False


def test_description_and_per_block_needs():
    assert build_reducer("vidtldr", [3, 2]).describe() == {"name": "vidtldr", "r": [3, 2]}
    assert Reducer(None).describe() == {"name": "none", "r": []}
    tome = build_reducer("tome", [1, 0])
    assert tome.needs(0, 10) == "keys" and tome.needs(1, 9) is None and tome.needs(2, 9) is None


def test_a_reducer_module_added_to_the_package_is_discovered(tmp_path, monkeypatch):
    import vidtldr.reduce as package

    (tmp_path / "extra_for_test.py").write_text(
        "from vidtldr.reduce.base import Reducer, register_reducer\n\n\n"
        "@register_reducer('extra_for_test')\nclass Extra(Reducer):\n    pass\n")
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    try:
        assert reducer_class("extra_for_test").__module__ == "vidtldr.reduce.extra_for_test"
    finally:
        REDUCERS.pop("extra_for_test", None)
        sys.modules.pop("vidtldr.reduce.extra_for_test", None)


def test_the_merge_rule_gets_unit_sizes_at_the_first_merge_then_its_own():
    seen = []

    def merge_wavg(match, x, size):  # drops the first token, doubles the sizes
        seen.append(size)
        return x[:, 1:], 2 * size[:, 1:]

    state = ReductionState()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    out = apply_merge(None, x, state, merge_wavg, merge_source=None)  # no provenance asked: never called
    assert torch.equal(seen[0], torch.ones(2, 5, 1, dtype=torch.float64)) and torch.equal(out, x[:, 1:])
    apply_merge(None, out, state, merge_wavg, merge_source=None)
    assert torch.equal(seen[1], torch.full((2, 4, 1), 2.0, dtype=torch.float64))
    assert torch.equal(state.size, torch.full((2, 3, 1), 4.0, dtype=torch.float64))


@pytest.mark.parametrize("name, key", [("tome", "keys"), ("pitome", "keys"), ("random_merge", "keys"),
                                       ("fastv", "attn"), ("visionzip", "attn")])
def test_a_block_that_did_not_compute_what_the_reducer_needs_is_named(name, key):
    x = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError) as err:
        build_reducer(name, [2]).reduce(x, 0, ReductionState(), {"other": x})
    assert str(err.value) == (f"{name} at block 0: aux has no '{key}' (got keys ['other']); the attention must "
                              "compute what needs() asks for")


def test_a_pruner_keeps_the_sizes_and_provenance_of_the_tokens_it_keeps():
    # a pruner after a merging part (a composition): the sizes an earlier merge made stay aligned
    from vidtldr.reduce.base import apply_keep

    x = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    state = ReductionState(size=torch.tensor([[[1.0], [2.0], [3.0], [4.0]], [[5.0], [6.0], [7.0], [8.0]]]),
                           trace_source=True)
    keep = torch.tensor([[0, 2], [3, 1]])
    out = apply_keep(keep, x, state)
    assert torch.equal(out, torch.stack([x[0, [0, 2]], x[1, [3, 1]]]))
    assert torch.equal(state.size, torch.tensor([[[1.0], [3.0]], [[8.0], [6.0]]]))
    assert torch.equal(state.source, torch.tensor([[[1.0, 0, 0, 0], [0, 0, 1, 0]], [[0, 0, 0, 1], [0, 1, 0, 0]]]))


def test_the_base_reducers_cost_hooks_add_nothing():
    # ToMe's halves: ceil(T/2) x floor(T/2) similarities; no extra selection cost; no input-level work
    dims = backbone_vision_dims("tiny")
    shape = Reducer.similarity_shape(9, 2)
    assert shape == (5, 4) and all(type(n) is int for n in shape)
    assert Reducer.selection_flops(dims, 196, 10) == 0 and Reducer([4]).input_flops(dims, 196, 0) == 0
