"""Bad checkpoints give a clear error naming the file and the first offending keys."""
import pickle

import pytest
import torch

from vscolormnet.weights import CheckpointError, expected_shapes, load_model, read_state_dict


def cheap_state_dict():
    """All keys with the right shapes, each backed by a one-element storage (small file)."""
    return {k: (torch.zeros((), dtype=torch.int64) if k.endswith("num_batches_tracked")
                else torch.zeros(1).expand(*s) if s else torch.zeros(()))
            for k, s in expected_shapes().items()}


def test_expected_structure_matches_the_official_checkpoint():
    shapes = expected_shapes()
    assert len(shapes) == 667
    assert shapes["key_encoder.network2.backbone.pos_embed"] == (1, 1370, 384)
    assert shapes["value_encoder.conv1.weight"] == (64, 5, 7, 7)


def test_valid_cheap_checkpoint_loads(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save(cheap_state_dict(), path)
    assert len(read_state_dict(path)) == 667


def test_truncated(tmp_path):
    path = tmp_path / "trunc.pth"
    torch.save(cheap_state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"trunc\.pth cannot be read"):
        read_state_dict(path)


def test_missing_keys(tmp_path):
    sd = cheap_state_dict()
    del sd["decoder.pred.bias"], sd["key_proj.d_proj.weight"]
    path = tmp_path / "missing.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"missing\.pth misses 2 keys: key_proj\.d_proj\.weight, decoder\.pred\.bias"):
        read_state_dict(path)


def test_unexpected_keys(tmp_path):
    sd = cheap_state_dict()
    sd["key_encoder.layer4.0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "extra.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: key_encoder\.layer4\.0\.conv1\.weight"):
        read_state_dict(path)


def test_wrong_shapes(tmp_path):
    sd = cheap_state_dict()
    sd["value_encoder.conv1.weight"] = torch.zeros(64, 4, 7, 7)
    path = tmp_path / "shape.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"shape\.pth has 1 tensors of the wrong shape: "
                                              r"value_encoder\.conv1\.weight \(64, 4, 7, 7\) \(expected \(64, 5, 7, 7\)\)"):
        read_state_dict(path)


def test_pickle_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match=r"list\.pth is not a state_dict"):
        read_state_dict(path)


def test_arbitrary_pickle_is_refused_by_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match=r"evil\.pth cannot be read"):
        read_state_dict(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.pth")
