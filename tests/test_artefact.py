"""Saved artefacts: a save never deletes what it did not write, and config.json is covered by the integrity check."""

import json

import numpy as np
import pytest
import torch

from vinn_policy import ArtefactError, Encoder
from vinn_policy.artefact import META_FILE, WEIGHTS_FILE, load_artefact, save_artefact


def test_a_save_into_a_folder_with_foreign_files_is_refused_and_keeps_them(tmp_path, tiny_encoder):
    run = tmp_path / "runs" / "door"
    (run / "videos").mkdir(parents=True)
    (run / "videos" / "vinn_seed0.mp4").write_bytes(b"video")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"Refusing to save over .*door.*notes\.txt.*videos"):
        tiny_encoder.save(run)
    assert (run / "notes.txt").read_text() == "mine" and (run / "videos" / "vinn_seed0.mp4").read_bytes() == b"video"
    assert sorted(p.name for p in tmp_path.joinpath("runs").iterdir()) == ["door"]  # no staging debris


def test_a_save_over_an_artefact_with_an_extra_file_or_an_unknown_kind_is_refused(tmp_path, tiny_encoder):
    path = tiny_encoder.save(tmp_path / "enc")
    (path / "README.md").write_text("what this encoder is")
    with pytest.raises(FileExistsError, match="README.md"):
        tiny_encoder.save(path)
    assert (path / "README.md").exists()

    other = tmp_path / "other"
    other.mkdir()
    (other / META_FILE).write_text(json.dumps({"kind": "somebody_elses_model"}))
    with pytest.raises(FileExistsError, match="names no artefact kind"):
        tiny_encoder.save(other)
    assert json.loads((other / META_FILE).read_text()) == {"kind": "somebody_elses_model"}
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        tiny_encoder.save(tmp_path / "file")


def test_a_save_replaces_an_empty_folder_or_an_artefact(tmp_path, tiny_encoder):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert sorted(p.name for p in tiny_encoder.save(empty).iterdir()) == [META_FILE, WEIGHTS_FILE]
    torch.manual_seed(1)
    other = Encoder(tiny_encoder.config)
    other.save(empty)  # over an artefact of this package: replaced
    images = np.zeros((1, 32, 32, 3), np.uint8)
    np.testing.assert_array_equal(Encoder.load(empty).embed(images), other.embed(images))


def test_a_hand_edited_config_json_is_refused(tmp_path):
    path = save_artefact(tmp_path / "a", "encoder", {"w": torch.zeros(2)}, {"uncertainty_reference": {"distance": 1.0}})
    meta = json.loads((path / META_FILE).read_text())
    meta["uncertainty_reference"] = {"distance": 0.0}
    (path / META_FILE).write_text(json.dumps(meta, indent=4))
    with pytest.raises(ArtefactError, match="edited or corrupted"):
        load_artefact(path, "encoder")
    meta["uncertainty_reference"] = {"distance": 1.0}  # the original fields, in another layout: still valid
    (path / META_FILE).write_text(json.dumps(meta))
    assert load_artefact(path, "encoder")[1]["uncertainty_reference"] == {"distance": 1.0}


def test_format_version_1_artefacts_without_a_config_checksum_still_load(tmp_path):
    path = save_artefact(tmp_path / "a", "encoder", {"w": torch.ones(2)}, {"note": "old"})
    meta = json.loads((path / META_FILE).read_text())
    del meta["meta_sha256"]
    (path / META_FILE).write_text(json.dumps({**meta, "format_version": 1}))
    tensors, loaded = load_artefact(path, "encoder")
    assert loaded["note"] == "old" and torch.equal(tensors["w"], torch.ones(2))
