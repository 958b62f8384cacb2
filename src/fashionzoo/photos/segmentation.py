"""Find the garment in a photo: a 0/1 mask of its silhouette, holes filled, people's skin left out (OpenCV).

Real product photos defeat a plain colour trim: light-grey backgrounds brighten towards the middle (vignetting),
white garments differ from white by a few grey levels, and shadows darken the floor. Edges are kept by all of these,
so the outline comes from Canny edges, closed and filled; on a textured background (phone photos on beds and floors)
edges are everywhere, and the colour distance from the border's median colour, thresholded with Otsu and refined by
colour models of garment and background, does better. On a person (a face at the top of a tall silhouette) pixels of
the wearer's skin tone are removed so that the garment, not the arms, legs and head, is what remains. Every setting was
chosen on the development photos (``shared/data/real-photos``, balanced accuracy of the default model); the figures
are in ``docs/photos.md`` ("How the pipeline's settings were chosen"). OpenCV (opencv-python-headless) was chosen
over scikit-image: it has all of these steps, is one wheel with no further dependency, and runs the pipeline in about
a millisecond per photo. GrabCut's colour-model step (:func:`_refine_by_colour`) stands in for OpenCV's GrabCut.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

_EDGE_SIGMA, _CLOSE = 0.7, 7
"""Gaussian blur before Canny and the diameter of the ellipse that closes gaps in the outline, in pixels of the
128-pixel working size (as every size here): the settings at 256 pixels rescaled (chosen on the development photos:
docs/photos.md)."""
_CANNY_LOW, _CANNY_HIGH = 6, 18
"""Canny hysteresis thresholds: low enough for white on white, whose outline broke at higher ones (chosen on the
development photos: docs/photos.md)."""
_FRAME = 2
"""Outline pixels this close to the edge of the photo are ignored: a frame line or JPEG ringing (chosen on the
development photos: docs/photos.md)."""
_TEXTURED_SPREAD = 8.0
"""Median Lab distance of the border pixels from their median colour above which the background counts as
textured and the colour mask is used: there, edges are everywhere (chosen on the development photos: docs/photos.md)."""
_OTSU_SCALE, _MIN_DISTANCE = 0.25, 8
"""The colour mask keeps pixels farther from the background than 0.25 of the Otsu threshold, and at least 8 levels.
It only starts the colour models (:func:`_refine_by_colour`), and a loose start did better (chosen on the development
photos: docs/photos.md)."""
_MODEL_SIZE, _MODEL_LEVELS, _MODEL_ROUNDS = 64, 8, 3
"""The colour models are fitted on the photo reduced to 64 pixels, with each RGB channel cut into 8 levels (512
colours), and refitted 3 times from their own mask: more levels leave too few pixels per colour (chosen on the
development photos: docs/photos.md)."""
_MODEL_SIGMA, _MODEL_MARGIN, _MODEL_MIN_PIXELS = 1.0, 0.75, 50
"""A pixel is garment when its log likelihood ratio, blurred with a Gaussian of sigma 1 pixel (neighbours vote, the
job of GrabCut's smoothness term), exceeds 0.75 (chosen on the development photos: docs/photos.md).
The models are fitted only when the mask holds at least 50 pixels of garment and of background, and a result with
fewer garment pixels falls back to the mask it started from."""
_SKIN_LOW, _SKIN_HIGH = (0, 135, 85), (255, 180, 135)
"""Skin colour range in YCrCb (the common Chai and Ngan 1999 box)."""
_HEAD_ROWS, _HEAD_SKIN, _PERSON_ASPECT = 0.2, 0.2, 1.2
"""A person: at least 20% skin in the top 20% of the silhouette's rows, and a silhouette 1.2 times taller than wide
(skin removal chosen on the development photos, for worn ones: docs/photos.md)."""
_FACE_ROWS, _WEARER_DISTANCE, _WEARER_SPREAD = 0.12, 3.0, 2.0
"""Skin is only what is near the wearer's own tone: the skin-box pixels of the top 12% of the silhouette's rows (the
face) give its mean and covariance in CrCb (at least 2 levels of spread each way), and a skin-box pixel is skin within
a Mahalanobis distance of 3 of it. The box alone also holds pink, red, yellow, beige and khaki garments, which were
then removed with the skin, the person undone, and the head and trousers left in (chosen on the development photos,
worn ones: docs/photos.md)."""
_HALO_DISTANCE = 0.05 * 255 * np.sqrt(3)
"""Pixels this close to the background colour are dropped from the silhouette's rim (as wide as the closing):
Canny traces a sharp step on either side and the closing rounds corners outwards, which left up to 2 pixels of
background around the garment (the data set's own trim tolerance, 5%)."""
_SKIN_OPEN = 7
"""Diameter of the ellipse that opens the garment once skin is removed, dropping thin leftovers around arms
(chosen on the development photos: docs/photos.md)."""
_MIN_KEPT = 0.2
"""Skin removal is undone when it would leave less than this fraction of the silhouette."""
_SEPARATE_SHARE, _SEPARATE_MIN = 0.5, 0.01
"""Another filled shape of the outline counts as a separate garment when its area is at least half the largest's,
and the largest covers at least 1% of the photo. On the development photos 2 of 2,538 single-garment photos show
three or more (19 two or more, mostly pairs of shoes), and 9 of 12 photos made of three pool photos side by side
three (docs/photos.md)."""
SEVERAL_GARMENTS = 3
"""From this many separate shapes a photo shows several garments: two are most often a pair (shoes, socks, gloves),
which is one garment to the data set (its Sandal, Sneaker and Ankle boot images show pairs too)."""


def fitted_size(height: int, width: int, longest: int) -> tuple[int, int]:
    """The size, as (width, height) the way OpenCV and Pillow take it, of a height x width image scaled so that its
    longest edge is ``longest``, its aspect kept (each side at least 1)."""
    scale = longest / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _ellipse(diameter: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))


def _border(pixels: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels, one row per pixel."""
    return np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])


def largest_filled_component(mask: np.ndarray) -> np.ndarray:
    """The 8-connected component of a 0/1 uint8 mask whose outline encloses the largest area, holes filled.

    Outlines alone (``cv2.findContours``) pick the same component as counting pixels with
    ``connectedComponentsWithStats``, faster (measured on the development photos: docs/photos.md)."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return np.zeros_like(mask)
    return cv2.drawContours(np.zeros_like(mask), [max(contours, key=cv2.contourArea)], -1, 1, cv2.FILLED)


def _separate_shapes(outline: np.ndarray) -> int:
    """How many garment-sized filled shapes the outline holds (:data:`_SEPARATE_SHARE`): 1 for one garment."""
    contours, _ = cv2.findContours(outline, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    areas = sorted((cv2.contourArea(contour) for contour in contours), reverse=True)
    if not areas or areas[0] < _SEPARATE_MIN * outline.size:
        return 1
    return sum(area >= _SEPARATE_SHARE * areas[0] for area in areas)


def _edge_mask(rgb: np.ndarray) -> np.ndarray:
    """Canny outline, gaps closed, without the outermost pixels (a frame line or JPEG ringing at the edge).

    An outline that runs off the frame stays open, and only its line is kept: padding the photo with the
    background colour to close it measured worse (docs/photos.md): on cropped people and garments the filled
    shape is the whole frame's lower part, not the garment.
    """
    gray = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (0, 0), _EDGE_SIGMA)
    closed = cv2.morphologyEx(cv2.Canny(gray, _CANNY_LOW, _CANNY_HIGH), cv2.MORPH_CLOSE, _ellipse(_CLOSE))
    inner = np.zeros_like(closed)
    inner[_FRAME:-_FRAME, _FRAME:-_FRAME] = closed[_FRAME:-_FRAME, _FRAME:-_FRAME] > 0
    return inner


def _colour_mask(rgb: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Pixels whose RGB distance from the background colour passes a quarter of the Otsu threshold
    (:data:`_OTSU_SCALE`), and at least :data:`_MIN_DISTANCE`."""
    distance8 = np.clip(_distance(rgb, background), 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(distance8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return (distance8 > max(otsu * _OTSU_SCALE, _MIN_DISTANCE)).astype(np.uint8)


def _refine_by_colour(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask refitted to colour models of both sides, on the photo reduced to :data:`_MODEL_SIZE` pixels.

    A patterned bed or floor has several colours, and one distance from the border's median either keeps its
    darker parts or loses the garment. Histograms of the colours inside the mask (garment) and outside it
    (background, with the outermost ring always background) give each colour a log likelihood ratio; pixels whose
    blurred ratio passes :data:`_MODEL_MARGIN` form the next mask, and the models are refitted from it. This is
    GrabCut's colour-model step with a blur in place of its graph cut: on the development phone photos it scored
    as OpenCV's ``grabCut`` did at a tenth of its time (docs/photos.md), and it draws no random numbers.
    """
    height, width = mask.shape
    size = fitted_size(height, width, min(_MODEL_SIZE, max(height, width)))
    garment = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST) > 0
    ring = np.ones_like(garment)
    ring[1:-1, 1:-1] = False
    garment &= ~ring
    inside_pixels = int(garment.sum())
    if min(inside_pixels, garment.size - inside_pixels) < _MODEL_MIN_PIXELS:
        return mask
    levels = (cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) // (256 // _MODEL_LEVELS)).astype(np.intp)
    colours = (levels[..., 0] * _MODEL_LEVELS + levels[..., 1]) * _MODEL_LEVELS + levels[..., 2]
    for _ in range(_MODEL_ROUNDS):
        inside = np.bincount(colours[garment], minlength=_MODEL_LEVELS**3) + 0.5  # +0.5: unseen colours
        outside = np.bincount(colours[~garment], minlength=_MODEL_LEVELS**3) + 0.5
        ratio = (np.log(inside / inside.sum()) - np.log(outside / outside.sum())).astype(np.float32)
        garment = (cv2.GaussianBlur(ratio[colours], (0, 0), _MODEL_SIGMA) > _MODEL_MARGIN) & ~ring
    if garment.sum() < _MODEL_MIN_PIXELS:
        return mask
    return cv2.resize(garment.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)


def _without_halo(rgb: np.ndarray, mask: np.ndarray, background: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask - cv2.erode(mask, _ellipse(_CLOSE)))
    near = _distance(rgb[rows, cols], background) <= _HALO_DISTANCE
    trimmed = mask.copy()
    trimmed[rows[near], cols[near]] = 0
    return trimmed


def _distance(pixels: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Euclidean RGB distance of uint8 pixels (..., 3) from the background colour, float32."""
    difference = pixels.astype(np.float32) - background
    return np.sqrt(np.einsum("...c,...c->...", difference, difference))


def _median(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=0)`` of a non-empty float32 array, without its per-call checks (a tenth of a
    millisecond each, several times per photo)."""
    middle = len(values) // 2
    if len(values) % 2:
        return np.partition(values, middle, axis=0)[middle]
    return np.partition(values, (middle - 1, middle), axis=0)[middle - 1 : middle + 1].mean(axis=0)


def _is_textured(rgb: np.ndarray) -> bool:
    ring = cv2.cvtColor(_border(rgb)[:, np.newaxis], cv2.COLOR_RGB2LAB)[:, 0].astype(np.float32)
    return float(_median(np.abs(ring - _median(ring)).sum(axis=1))) > _TEXTURED_SPREAD


def _without_skin(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """The mask minus skin when it looks like a person wearing the garment; None when it does not, or when too
    little would be left."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    if height < _PERSON_ASPECT * width:
        return None
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    skin = cv2.inRange(ycrcb, _SKIN_LOW, _SKIN_HIGH)
    is_skin = cv2.morphologyEx(skin, cv2.MORPH_OPEN, _ellipse(3)) > 0
    top = rows[0] + max(1, int(_HEAD_ROWS * height))
    head = mask[:top] > 0
    if is_skin[:top][head].mean() < _HEAD_SKIN:
        return None
    is_skin &= mask > 0
    face = rows[0] + max(2, int(_FACE_ROWS * height))
    is_skin[is_skin] = _near_wearer(ycrcb[is_skin][:, 1:], ycrcb[:face][is_skin[:face]][:, 1:])
    clothed = cv2.morphologyEx(((mask > 0) & ~is_skin).astype(np.uint8), cv2.MORPH_OPEN, _ellipse(_SKIN_OPEN))
    garment = largest_filled_component(clothed)
    return garment if garment.sum() > _MIN_KEPT * mask.sum() else None


def _near_wearer(chroma: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Which of the pixels ``chroma`` (N, 2: Cr and Cb) are within :data:`_WEARER_DISTANCE` of the tone of ``face``
    (M, 2: the face's skin pixels); all of them when too few face pixels were found to tell a tone."""
    if len(face) < 5:
        return np.ones(len(chroma), dtype=bool)
    samples = face.astype(np.float64)
    covariance = np.cov(samples, rowvar=False) + np.eye(2) * _WEARER_SPREAD**2
    offsets = chroma - samples.mean(axis=0)
    return np.einsum("ij,jk,ik->i", offsets, np.linalg.inv(covariance), offsets) <= _WEARER_DISTANCE**2


def border_colour(rgb: np.ndarray) -> np.ndarray:
    """The background colour: the per-channel median of the outermost ring of pixels (float32, 3 values)."""
    return _median(_border(rgb).astype(np.float32))


class Garment(NamedTuple):
    """Where the garment is in a photo, and on what it was found."""

    mask: np.ndarray
    """0/1 uint8, the photo's height and width."""
    scene: str
    """One of :data:`fashionzoo.photos.calibration.SCENES`: ``person`` when a wearer's skin was removed, else
    ``textured`` for a textured background, else ``plain``."""
    garments: int = 1
    """Separate garment-sized shapes in the photo; the mask holds the largest. More than one: several garments (or
    a pair of shoes), and a single label is a guess."""


def find_garment(rgb: np.ndarray, background: np.ndarray) -> Garment:
    """The garment in an RGB uint8 photo (H, W, 3), about 128 pixels on its longest edge, whose background colour
    is ``background`` (:func:`border_colour`)."""
    textured = _is_textured(rgb)
    outline = _refine_by_colour(rgb, _colour_mask(rgb, background)) if textured else _edge_mask(rgb)
    mask = _without_halo(rgb, largest_filled_component(outline), background)
    clothed = _without_skin(rgb, mask) if mask.any() else None
    if clothed is not None:
        return Garment(clothed, "person", _separate_shapes(outline))
    return Garment(mask, "textured" if textured else "plain", _separate_shapes(outline))
