"""The data sets the zoo trains on: their class names, input spec and official files."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES: tuple[str, ...] = tuple(str(digit) for digit in range(10))
PIPELINES = ("fashion-mnist", "mnist")
"""How an image file becomes a 28x28 input: a product photo after Fashion-MNIST's own conversion, or a handwritten
digit after MNIST's (fitted into 20x20, centred by its centre of mass); see :mod:`fashionzoo.photos`."""


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the model's input: NHWC float32 ``pixel * scale``, from an image file by ``pipeline``.

    Travels with the weights into the ONNX metadata (``fashionzoo.input``), from which the runtime reads it back."""

    height: int = 28
    width: int = 28
    channels: int = 1
    scale: float = 1.0 / 255.0  # uint8 pixel * scale -> model input
    pipeline: str = "fashion-mnist"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> InputSpec:
        """Parse ``fashionzoo.input`` metadata; unknown keys (older files: ``layout``, ``background``) are ignored.
        Only what the pipelines serve is accepted: 28x28x1 images scaled by a finite positive factor (an edited
        ``scale`` of 0, -1 or 1e-300 gave a traceback or the same class for every image)."""
        try:
            raw = json.loads(text)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        spec = cls(**{key: value for key, value in raw.items() if key in known})
        scale = spec.scale
        number = isinstance(scale, (int, float)) and not isinstance(scale, bool)
        if (
            spec.pipeline not in PIPELINES
            or [spec.height, spec.width, spec.channels] != [28, 28, 1]
            or not all(type(v) is int for v in (spec.height, spec.width, spec.channels))
            or not (number and 1e-6 <= scale <= 1.0)
        ):  # (NaN and 10**400 compare False)
            raise ValueError(f"unsupported input spec {text[:200]} (28x28x1 images, a scale in [1e-6, 1])")
        return spec


DEFAULT_TAG = "fashion-mnist"
"""An untagged model name means weights trained on this data set."""


def full_name(model: str, tag: str) -> str:
    """What a user types to get a model's weights for data set ``tag``: ``model`` for :data:`DEFAULT_TAG`, else
    ``model.tag`` (``cnn-small.mnist``); also the name of the weights' files and Hub repo."""
    return model if tag == DEFAULT_TAG else f"{model}.{tag}"


@dataclass(frozen=True)
class PhotoPool:
    """A pool of labelled real photos that weights may train on beside a data set's images: where it is found, its
    licence, the SHA-256 of its manifest and of its photo files (the official pool), and the Fashion-MNIST classes each
    of its labels allows (an empty set: none of the ten, taught as "unsure")."""

    name: str
    env_var: str  # names the pool's folder
    manifest: str
    manifest_sha256: str
    photos_sha256: str  # of the lines "file<TAB>SHA-256 of the file" of every labelled photo, sorted by file
    licence: str
    source: str
    label_classes: dict[str, frozenset[int]]

    @property
    def recorded_names(self) -> tuple[str, str]:
        """The keys a run records the manifest's and the photos' SHA-256 under."""
        return f"{self.name}/{self.manifest}", f"{self.name}/photos"

    def is_official(self, recorded: dict[str, str]) -> bool:
        """Whether a run read the whole official pool."""
        manifest, photos = self.recorded_names
        return recorded.get(manifest) == self.manifest_sha256 and recorded.get(photos) == self.photos_sha256


CLOTHING_PHOTOS = PhotoPool(
    name="clothing-photos",
    env_var="FASHIONZOO_PHOTOS_DIR",
    manifest="images.csv",
    manifest_sha256="b3981d170b80ac0f6fe96eda8d32d626666a99c3b451f200bb90f372a816f25f",
    photos_sha256="a2f9b94ab7f386a0a195f130c2a514bba8b35b0c5445eb9c4c93523a8e2fc0df",
    licence="CC0 1.0",
    source="the clothing dataset by Alexey Grigorev and contributors (4,200 labelled phone photos by 223 people)",
    label_classes={
        "T-Shirt": frozenset({0}),
        "Polo": frozenset({0}),  # a judgement call the pool's README asks for: polos, tops and undershirts are tops
        "Top": frozenset({0}),
        "Undershirt": frozenset({0}),
        "Pants": frozenset({1}),
        "Longsleeve": frozenset({0, 2, 6}),
        "Hoodie": frozenset({2}),
        "Dress": frozenset({3}),
        "Outwear": frozenset({4}),
        "Blazer": frozenset({4}),
        "Shoes": frozenset({5, 7, 9}),
        "Shirt": frozenset({6}),
        "Blouse": frozenset({0, 6}),
        "Hat": frozenset(),
        "Shorts": frozenset(),
        "Skirt": frozenset(),
        "Other": frozenset(),
        "Body": frozenset(),
    },  # "Not sure" photos are left out
)
"""The CC0 pool of phone photos (``shared/data/clothing-photos``)."""


@dataclass(frozen=True)
class DataFile:
    """One official file of a data set: its name, the official MD5 and SHA-256 of the published ``.gz``, and the
    SHA-256 of its decompressed content (the same whatever gzip header a repackaging, such as Debian's, gives it),
    and its size."""

    name: str
    md5: str
    sha256: str
    content_sha256: str
    size: int  # bytes of the published .gz: a download that grows past it is not the official file


@dataclass(frozen=True)
class DatasetSpec:
    """A data set the zoo trains on, and so a weights tag (timm's ``name.tag``): what weights trained on it predict
    (``classes``) and expect (``input``), its official IDX files, the mirrors that serve them and where else a copy
    may be installed."""

    name: str
    classes: tuple[str, ...]
    input: InputSpec
    files: dict[str, DataFile]  # role ("train-images", ...) -> official file
    mirrors: tuple[str, ...]
    env_var: str  # names a local folder of this data set's files
    system_dir: str | None = None  # a distribution package's copy (Debian/Ubuntu), verified by content SHA-256
    images_from: str = ""  # another data set whose IDX files this one reads (its folder, cache and mirrors)
    photo_pool: PhotoPool | None = None  # real photos trained on beside the images

    def is_official(self, recorded: dict[str, str]) -> bool:
        """Whether ``recorded`` (file name -> SHA-256, as a run records them) names this data set's four official
        files, by the SHA-256 of either the published ``.gz`` or its decompressed content, and its whole official
        photo pool if it has one."""
        files = all(recorded.get(f.name) in (f.sha256, f.content_sha256) for f in self.files.values())
        return files and (self.photo_pool is None or self.photo_pool.is_official(recorded))

    def content_hashes(self, recorded: dict[str, str]) -> dict[str, str]:
        """``recorded`` with each official ``.gz`` SHA-256 replaced by its content's (one form for every record)."""
        by_name = {f.name: f for f in self.files.values()}
        return {
            name: by_name[name].content_sha256 if name in by_name and sha == by_name[name].sha256 else sha
            for name, sha in recorded.items()
        }


DATASETS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        classes=FASHION_CLASSES,
        input=InputSpec(),
        files={
            "train-images": DataFile(
                "train-images-idx3-ubyte.gz",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                26_421_880,
            ),
            "train-labels": DataFile(
                "train-labels-idx1-ubyte.gz",
                "25c81989df183df01b3e8a0aad5dffbe",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                29_515,
            ),
            "test-images": DataFile(
                "t10k-images-idx3-ubyte.gz",
                "bef4ecab320f06d8554ea6380940ec79",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                4_422_102,
            ),
            "test-labels": DataFile(
                "t10k-labels-idx1-ubyte.gz",
                "bb300cfdad3c16e7a12a480ee83cd310",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                5_148,
            ),
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        env_var="FASHIONZOO_DATA_DIR",
        system_dir="/usr/share/datasets/fashion-mnist",  # apt-get install dataset-fashion-mnist
    ),
    "mnist": DatasetSpec(
        name="mnist",
        classes=DIGIT_CLASSES,
        input=InputSpec(pipeline="mnist"),
        files={
            "train-images": DataFile(
                "train-images-idx3-ubyte.gz",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                9_912_422,
            ),
            "train-labels": DataFile(
                "train-labels-idx1-ubyte.gz",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                28_881,
            ),
            "test-images": DataFile(
                "t10k-images-idx3-ubyte.gz",
                "9fb629c4189551a2d022fa330f9573f3",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                1_648_877,
            ),
            "test-labels": DataFile(
                "t10k-labels-idx1-ubyte.gz",
                "ec29112dd5afa0611ce80d1b7f02629c",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                4_542,
            ),
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        env_var="FASHIONZOO_MNIST_DIR",
    ),
}
DATASETS["photos"] = dataclasses.replace(
    DATASETS["fashion-mnist"], name="photos", images_from="fashion-mnist", photo_pool=CLOTHING_PHOTOS
)
"""Fashion-MNIST's images and the CC0 photo pool: weights that have seen real photos (``zoo-resnet.photos``)."""
