"""The model's layout and strict checkpoint loading."""

from collections import OrderedDict

import pytest
import torch

from retinaface.errors import ModelError
from retinaface.model import RetinaFace, load_model
from tests.paths import SHARED


def reference_keys():
    """(name, shape) pairs of biubug6's state dict, recorded from the original code."""
    rows = []
    for line in (SHARED / "research" / "biubug6_state_dict_keys.txt").read_text().splitlines():
        if line.startswith("KEY "):
            name, shape = line[4:].split(" ", 1)
            rows.append((name, tuple(int(d) for d in shape.strip("()").split(",") if d.strip())))
    return rows


def test_state_dict_keys_and_shapes_equal_biubug6():
    ours = [(k, tuple(v.shape)) for k, v in RetinaFace().state_dict().items()]
    assert ours == reference_keys()
    assert len(ours) == 300


def test_parameter_count_matches_biubug6():
    model = RetinaFace()
    assert sum(p.numel() for p in model.parameters()) == 426_608


def test_output_shapes_and_softmax():
    model = RetinaFace().eval()
    with torch.no_grad():
        bbox, conf, landm = model(torch.zeros(1, 3, 480, 640))
    assert (
        bbox.shape == (1, 12600, 4)
        and conf.shape == (1, 12600, 2)
        and landm.shape == (1, 12600, 10)
    )
    assert torch.allclose(conf.sum(-1), torch.ones(1, 12600))


def test_loads_module_prefix_and_state_dict_wrapper(tmp_path, weights_path):
    state = torch.load(weights_path, map_location="cpu")
    wrapped = {"state_dict": OrderedDict(("module." + k, v) for k, v in state.items())}
    path = tmp_path / "wrapped.pth"
    torch.save(wrapped, path)
    model = load_model(path)
    assert torch.equal(model.state_dict()["fpn.merge1.0.weight"], state["fpn.merge1.0.weight"])


def test_checkpoint_of_another_architecture_names_the_keys(tmp_path, weights_path):
    state = torch.load(weights_path, map_location="cpu")
    state.pop("ssh1.conv7x7_3.0.weight")
    state["body.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "resnet.pth"
    torch.save(state, path)
    with pytest.raises(ModelError) as error:
        load_model(path)
    message = str(error.value)
    assert str(path) in message
    assert "ssh1.conv7x7_3.0.weight" in message and "body.conv1.weight" in message


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"\x80\x02not a pickle at all")
    with pytest.raises(ModelError, match="broken.pth"):
        load_model(path)
