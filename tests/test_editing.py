"""Parametric editing on the real SmolLM2-135M: ROME, undo, stacking, save/reapply, bad input, NaN safety."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from model_weights import snapshot, unchanged

from kedit.editing import (
    EditRecord,
    EditRequest,
    EditRequestError,
    FTConfig,
    ParametricEditor,
    ROMEConfig,
    config_from_dict,
    default_config,
    get_method,
    method_names,
    register_method,
)
from kedit.errors import (
    EditError,
    NothingToEditError,
    UnknownConfigKeyError,
    UnknownEditMethodError,
    UnsupportedArchitectureError,
)

DARRIEUX = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")
HILTON = EditRequest("{} is a citizen of", "Paris Hilton", "Germany")
EIFFEL = EditRequest("{}, which is located in", "Eiffel Tower", "Rome")
# The default run must stay short on a shared 2-core machine: the bare prompt only (no generated
# context templates); the full 21-template default is measured in benchmarks/studies/edit_quality.py.
FAST = replace(default_config("rome", "llama"), context_templates=())


def test_rome_edit_verifies_and_undo_is_bit_exact(smollm, editor, pristine):
    rec = editor.apply([DARRIEUX], method="rome", config=FAST)
    v = rec.verification[0]
    assert v["after"]["accuracy"] == 1.0 and v["after"]["first_token_rank"] == 0
    assert v["after"]["prob"] > v["before"]["prob"]
    assert rec.changed == [smollm.spec.down_proj_name(default_config("rome", "llama").layer)]
    assert editor.live[-1] is rec
    assert not unchanged(smollm, pristine)
    assert editor.undo(rec) == [rec]
    assert unchanged(smollm, pristine)
    assert editor.live == []
    with pytest.raises(EditError):
        editor.undo(rec)  # not live any more


def test_sequential_stack_and_undo_semantics(smollm, editor, pristine):
    r1 = editor.apply([HILTON], method="rome", config=FAST)
    mid = snapshot(smollm)
    other_layer = replace(FAST, layer=6)
    r2 = editor.apply([EIFFEL], method="rome", config=other_layer)  # a different matrix
    r3 = editor.apply([DARRIEUX], method="rome", config=FAST)  # same matrix as r1
    assert [r.id for r in editor.live] == [r1.id, r2.id, r3.id]
    assert all(r.success for r in (r1, r2, r3))
    # r1 shares its matrix with the later r3: refused alone ...
    with pytest.raises(EditError, match="later edit"):
        editor.undo(r1)
    # ... r2 touched another matrix only: undoing it out of order is exact.
    editor.undo(r2)
    editor.undo(r3)
    assert unchanged(smollm, mid)
    r3b = editor.apply([DARRIEUX], method="rome", config=FAST)
    assert [r.id for r in editor.undo(r1, cascade=True)] == [r3b.id, r1.id]
    assert unchanged(smollm, pristine) and editor.live == []


def test_save_and_reapply_on_fresh_model(smollm, editor, pristine, tmp_path):
    from kedit.runtime import load_model

    rec = editor.apply([HILTON, EIFFEL], method="rome", config=FAST)  # sequential ROME in one record
    assert len(rec.steps) == 2 and len(rec.verification) == 2
    edited = snapshot(smollm)
    rec.save(tmp_path / "edit")
    editor.undo(rec)
    fresh = load_model("smollm2-135m")
    assert fresh.model is not smollm.model
    ed2 = ParametricEditor(fresh)
    loaded = EditRecord.load(tmp_path / "edit")
    assert loaded.id == rec.id and loaded.requests == rec.requests and loaded.config == rec.config
    live = ed2.reapply(loaded)
    assert unchanged(fresh, edited)
    with pytest.raises(EditError, match="already live"):
        ed2.reapply(loaded)
    ed2.undo(live)
    assert unchanged(fresh, pristine)
    # strict reapply refuses a model whose weights differ from the record's base
    ed2.reapply(loaded)
    with pytest.raises(EditError, match="differs"):
        ParametricEditor(fresh).reapply(EditRecord.load(tmp_path / "edit"))


def test_bad_inputs_raise_clear_errors(smollm, editor, pristine):
    with pytest.raises(EditRequestError, match="not in the prompt"):
        EditRequest("The capital of France is", "Germany", "Paris")
    with pytest.raises(EditRequestError, match="empty target"):
        EditRequest("{} is located in", "Paris", "  ")
    with pytest.raises(ValueError):  # EditRequestError is also a ValueError
        EditRequest("{} and {} are", "A", "B")
    literal = EditRequest("The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "English")
    assert literal.prompt == "The mother tongue of {} is"
    with pytest.raises(NothingToEditError, match="already answers"):
        editor.apply([EditRequest("The capital of France is", "France", "Paris")], config=FAST)
    with pytest.raises(UnknownEditMethodError, match="unknown editing method 'grace'"):
        editor.apply([DARRIEUX], method="grace")
    with pytest.raises(EditError, match="needs a"):
        editor.apply([DARRIEUX], method="rome", config=FTConfig())
    with pytest.raises(EditError, match="out of range"):
        editor.apply([DARRIEUX], method="rome", config=ROMEConfig(layer=99))
    assert unchanged(smollm, pristine) and editor.live == []


def test_registry_names_unknown_methods_and_settings():
    assert method_names() == ("rome", "memit", "alphaedit", "ft-l")
    assert get_method("alphaedit").config_cls is type(default_config("alphaedit", "llama"))
    assert not get_method("ft-l").sadr and get_method("rome").sadr
    with pytest.raises(UnknownEditMethodError, match="'grace'.*known: rome, memit, alphaedit, ft-l"):
        get_method("grace")
    with pytest.raises(UnknownEditMethodError):
        default_config("grace", "llama")
    with pytest.raises(UnknownEditMethodError):
        config_from_dict("grace", {})
    # a saved config with settings its method does not have is refused, naming them (not silently dropped)
    saved = {**default_config("rome", "llama").to_dict(), "lr": 0.1, "num_steps": 3}
    with pytest.raises(UnknownConfigKeyError, match="no setting 'lr', 'num_steps'"):
        config_from_dict("rome", saved)
    with pytest.raises(ValueError):  # UnknownConfigKeyError is also a ValueError
        config_from_dict("ft-l", {"layers": [3, 4]})
    for method in method_names():
        cfg = default_config(method, "gemma3")
        assert config_from_dict(method, cfg.to_dict()) == cfg  # lists back to tuples
    with pytest.raises(ValueError, match="registered already"):
        register_method("rome", ROMEConfig, get_method("rome").apply)
    assert get_method("rome").config_cls is ROMEConfig


def test_unsupported_architecture(smollm):
    from dataclasses import replace as dc_replace

    gpt2_like = dc_replace(smollm, spec=dc_replace(smollm.spec, family="gpt2"))
    with pytest.raises(UnsupportedArchitectureError):
        ParametricEditor(gpt2_like)


def test_nan_leaves_weights_untouched(smollm, editor, pristine):
    # An absurd learning rate blows the value optimisation up; the weights must not change.
    cfg = replace(FAST, v_lr=math.inf)
    with pytest.raises(EditError, match="non-finite"):
        editor.apply([DARRIEUX], method="rome", config=cfg)
    assert unchanged(smollm, pristine) and editor.live == []


def test_context_templates_are_cached(smollm):
    from kedit.editing.templates import context_templates

    first = context_templates(smollm, ((5, 5),), seed=1)
    assert len(first) == 6 and first[0] == "{}"
    assert all(t.endswith(". {}") and t.count("{}") == 1 for t in first[1:])
    assert context_templates(smollm, ((5, 5),), seed=1) == first
