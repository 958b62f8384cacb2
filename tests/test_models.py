"""Every registry entry builds, with exactly the parameter count recorded in the registry."""

from __future__ import annotations

import numpy as np
import pytest

import fashionzoo
from fashionzoo.registry.lookup import REGISTRY, get_entry

# Counts worked out by hand from the layer definitions of ../shared/docs/reference-models.md.
HAND_COUNTS = {
    "cnn": 320 + 18_496 + 1600 * 512 + 512 + 5_130,  # 843,658 as the reference says
    "lenet5": 156 + 2_416 + 30_840 + 10_164 + 850,  # 44,426 as the reference says
    "mlp": 784 * 512 + 512 + 5_130,
    "mlp-64-128-64-32": (784 * 64 + 64) + (64 * 128 + 128) + (128 * 64 + 64) + (64 * 32 + 32) + (32 * 10 + 10),
    "mlp-128-64": (784 * 128 + 128) + (128 * 64 + 64) + (64 * 10 + 10),
    # stem conv + BN; block 32; block 64 (+1x1 projection); block 128 (+projection); head. BN = 4 per channel.
    "zoo-resnet": (9 * 32 + 4 * 32)
    + 2 * (9 * 32 * 32 + 4 * 32)
    + (9 * 32 * 64 + 9 * 64 * 64 + 32 * 64 + 3 * 4 * 64)
    + (9 * 64 * 128 + 9 * 128 * 128 + 64 * 128 + 3 * 4 * 128)
    + (128 * 10 + 10),
}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_builder_matches_registry_param_count(name: str) -> None:
    entry = get_entry(name)
    kwargs = {"backbone_weights": None} if entry.needs_backbone_weights else {}
    model = fashionzoo.build(name, **kwargs)
    assert model.count_params() == entry.param_count
    assert tuple(model.input_shape[1:]) == entry.input_shape
    assert model.output_shape == (None, len(entry.classes))


@pytest.mark.parametrize("name", list(HAND_COUNTS))
def test_registry_counts_match_hand_counts(name: str) -> None:
    assert get_entry(name).params == HAND_COUNTS[name]


def test_transfer_backbone_is_frozen() -> None:
    model = fashionzoo.build("resnet50-tl", backbone_weights=None)
    backbone = next(layer for layer in model.layers if layer.name.startswith("resnet50"))
    assert not backbone.trainable
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 2048 * 10 + 10


def test_lenet_alias_and_close_matches() -> None:
    assert get_entry("lenet").name == "lenet5"
    assert get_entry("LeNet-5").name == "lenet5"
    with pytest.raises(fashionzoo.FashionZooError, match="Did you mean: .*lenet"):
        get_entry("lenett")


def test_weights_tags_by_name_and_their_errors() -> None:
    assert get_entry("CNN-B.MNIST").full_name == "cnn-small.mnist" and get_entry("cnn.fashion-mnist").full_name == "cnn"
    with pytest.raises(fashionzoo.FashionZooError, match="model 'cnn' has no 'mnist' weights; it has: cnn$"):
        get_entry("cnn.mnist")
    with pytest.raises(
        fashionzoo.FashionZooError, match=r"no 'imagenet' weights \(tags: fashion-mnist, mnist, photos\)"
    ):
        get_entry("cnn.imagenet")
    with pytest.raises(fashionzoo.FashionZooError, match="unknown model 'cnn.'"):
        get_entry("cnn.")
    with pytest.raises(fashionzoo.FashionZooError, match="cnn: got an unexpected keyword argument 'foo'"):
        fashionzoo.build("cnn", foo=1)  # a TypeError naming the builder's internals before
    assert len({get_entry("cnn"), get_entry("cnn-a"), get_entry("cnn-small.mnist")}) == 2  # usable as keys
    released = fashionzoo.list_models(pretrained=True)
    assert "cnn" in released and "vgg16-tl" not in released and set(released) < set(fashionzoo.list_models())


def test_missing_backbone_weights_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(fashionzoo.FashionZooError, match="backbone weights file not found"):
        fashionzoo.build("vgg16-tl", backbone_weights=str(tmp_path / "nope.h5"))


def test_load_rejects_weights_of_another_model(tmp_path) -> None:
    path = tmp_path / "mlp.weights.h5"
    fashionzoo.build("mlp-64-32").save_weights(path)
    with pytest.raises(fashionzoo.FashionZooError, match="do not fit model 'lenet5'"):
        fashionzoo.load("lenet5", weights=path)


def test_load_rejects_weights_of_a_same_depth_model(tmp_path) -> None:
    path = tmp_path / "other.weights.h5"
    fashionzoo.build("mlp-64-32").save_weights(path)
    with pytest.raises(fashionzoo.FashionZooError, match="do not fit model 'mlp-128-64'"):
        fashionzoo.load("mlp-128-64", weights=path)


def test_load_round_trips_local_weights(tmp_path) -> None:
    model = fashionzoo.build("mlp-64-32")
    path = tmp_path / "mine.weights.h5"
    model.save_weights(path)
    loaded = fashionzoo.load("mlp-c3", weights=path)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_wraps_flip_averaging_models_only(tmp_path) -> None:
    """``load`` serves ``test_time_flip`` models as image-and-mirror averages; ``test_time_flip=False`` (and
    every other model) gives the bare network with the same weights."""
    assert get_entry("zoo-resnet").test_time_flip and not get_entry("cnn").test_time_flip
    model = fashionzoo.build("zoo-resnet")
    path = tmp_path / "zoo.weights.h5"
    model.save_weights(path)
    served = fashionzoo.load("zoo-resnet", weights=path)
    bare = fashionzoo.load("zoo-resnet", weights=path, test_time_flip=False)
    assert bare.name == "zoo-resnet" and served.name == "zoo-resnet-flip-averaged"
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    plain, mirrored = np.asarray(bare(x)), np.asarray(bare(x[:, :, ::-1]))
    np.testing.assert_allclose(np.asarray(served(x)), (plain + mirrored) / 2, atol=1e-6)
    fashionzoo.build("mlp-64-32").save_weights(path := tmp_path / "mlp.weights.h5")
    assert fashionzoo.load("mlp-64-32", weights=path).name == "mlp-64-32"
