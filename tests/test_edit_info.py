"""EditInfo: the typed info of an edit record, written nested and read from the flat dicts of older records."""

import json

import pytest
import torch

from kedit.editing import EditInfo, EditRecord, EditRequest, NullSpace, ValueRun
from kedit.errors import EditError
from kedit.runtime.deltas import LowRank

# As kedit wrote them before EditInfo (copied from records of the previous version).
OLD_ROME = {
    "model": "smollm2-135m",
    "family": "llama",
    "sadr": False,
    "dtype": "float32",
    "value_steps": [12, 9],
    "value_s": [1.25, 0.75],
    "value_dtype": "bfloat16",
}
OLD_ALPHAEDIT = {
    "model": "smollm2-135m",
    "family": "llama",
    "sadr": True,
    "dtype": "bfloat16",
    "value_steps": 14,
    "value_s": 20.5,
    "value_cpu_s": 40.25,
    "request_steps": [14, 11, 8],
    "value_dtype": "bfloat16",
    "update_s": 3.5,
    "nullspace_dim": {"4": 1200, "5": 1100},
    "nullspace_tau": {"4": 0.01, "5": 0.02},
    "nullspace_energy": {"4": 0.999, "5": 0.998},
}
OLD_FT = {
    "model": "smollm2-135m",
    "family": "llama",
    "sadr": False,
    "dtype": "float32",
    "ft_steps": 25,
    "ft_loss": 0.125,
}
# before value_dtype and value_cpu_s were recorded
OLDEST_MEMIT = {
    "model": "smollm2-135m",
    "family": "llama",
    "sadr": False,
    "dtype": "float32",
    "value_steps": 20,
    "value_s": 30.0,
}


def _record(info: EditInfo) -> EditRecord:
    request = EditRequest("{} is a citizen of", "Paris Hilton", "Germany")
    return EditRecord.new(
        "rome", {"layer": 4}, [request], [("w", LowRank(torch.ones(2, 1), torch.ones(1, 2)))], info=info
    )


def test_old_rome_info_reads_one_value_run_per_request():
    info = EditInfo.from_json(OLD_ROME)
    assert info.value_runs == [ValueRun(12, 1.25, "bfloat16"), ValueRun(9, 0.75, "bfloat16")]
    assert (info.model, info.family, info.sadr, info.dtype) == ("smollm2-135m", "llama", False, "float32")
    assert info.update_s is None and not info.nullspace and info.ft_steps is None and not info.unknown


def test_old_batch_info_reads_one_run_and_the_null_spaces():
    info = EditInfo.from_json(OLD_ALPHAEDIT)
    assert info.value_runs == [ValueRun(14, 20.5, "bfloat16", 40.25, (14, 11, 8))]
    assert info.update_s == 3.5 and info.sadr
    assert info.nullspace == {4: NullSpace(1200, 0.01, 0.999), 5: NullSpace(1100, 0.02, 0.998)}
    oldest = EditInfo.from_json(OLDEST_MEMIT)
    assert oldest.value_runs == [ValueRun(20, 30.0, None, None, ())]  # not recorded then: None, not a guess
    ft = EditInfo.from_json(OLD_FT)
    assert (ft.ft_steps, ft.ft_loss, ft.value_runs) == (25, 0.125, [])


@pytest.mark.parametrize("old", [OLD_ROME, OLD_ALPHAEDIT, OLD_FT, OLDEST_MEMIT])
def test_info_round_trips_through_its_json(old):
    info = EditInfo.from_json(old)
    written = json.loads(json.dumps(info.to_json()))
    assert not set(written) & {"value_steps", "nullspace_dim"}  # written in the new shape only
    assert EditInfo.from_json(written) == info


def test_a_record_of_the_old_shape_loads_and_saves_in_the_new(tmp_path):
    """A record directory written by the previous kedit (format 2, flat info) loads with typed info;
    saved again, it is written nested and reads back equal."""
    directory = _record(EditInfo()).save(tmp_path / "rec")
    meta = json.loads((directory / "record.json").read_text())
    meta["info"] = OLD_ALPHAEDIT
    (directory / "record.json").write_text(json.dumps(meta))
    loaded = EditRecord.load(directory)
    assert loaded.info == EditInfo.from_json(OLD_ALPHAEDIT)
    assert loaded.info.value_runs[0].request_steps == (14, 11, 8)
    again = EditRecord.load(loaded.save(tmp_path / "again"))
    assert again.info == loaded.info
    assert "value_runs" in json.loads((tmp_path / "again" / "record.json").read_text())["info"]


def test_unknown_info_keys_are_kept_verbatim(tmp_path):
    newer = {
        **EditInfo(model="m", value_runs=[ValueRun(3, 0.5, "float32", 1.0, (3,))]).to_json(),
        "tokens_seen": 1234,
        "probe": {"kind": "x"},
    }
    info = EditInfo.from_json(newer)
    assert info.unknown == {"tokens_seen": 1234, "probe": {"kind": "x"}}
    loaded = EditRecord.load(_record(info).save(tmp_path / "rec"))
    assert loaded.info.to_json() == newer


@pytest.mark.parametrize(
    "bad",
    [
        {"value_runs": [{"steps": "many", "seconds": 1.0}]},
        {"value_runs": [{"seconds": 1.0}]},
        {"nullspace": {"4": {"dim": 3}}},
        {"value_steps": ["x"], "value_s": [1.0]},
        {"nullspace_dim": {"4": 3}},  # an old record's dims without their τ
    ],
)
def test_a_malformed_known_key_is_an_edit_error(bad):
    with pytest.raises(EditError, match="malformed"):
        EditInfo.from_json(bad)
