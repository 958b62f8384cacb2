// Pictures into a zoo model's input, in the page: a Uint8Array of 28x28 grey levels, bright object on black, the
// way the data set's images were made (the steps of src/fashionzoo/photos/garment.py and digits.py, simplified).
//
//   fashion-mnist: grey; the background's level read from the border and the grey levels negated where it is light;
//                  the object is what differs from the background (holes filled), cropped to its box, its longest
//                  edge fitted to 28 (area average), centred, sharpened, stretched to full contrast.
//   mnist:         the ink (negated on light paper), cropped, fitted into 20x20, centred by its centre of mass.
//
// A 28x28 image on a dark border passes through unchanged (it already is in the data set's format). The Python
// pipeline also tells a garment from a textured background or a wearer's skin (OpenCV); this one does not, so for
// real photos `fashionzoo predict` stays the reference.

const SIZE = 28;
const WORK_SIZE = { "fashion-mnist": 128, mnist: 512 }; // longest edge a picture is reduced to first (as in Python)
const OBJECT_LEVEL = 32; // grey levels from the background's above which a pixel belongs to the object
const INK_THRESHOLD = 0.25; // fraction of the strongest ink under which a pixel counts as paper (digits.py)
const DIGIT_BOX = 20;
const DIGIT_CENTRE = 14;

/** The largest value of an array (no spread: pictures have more pixels than a call takes arguments). */
const maxOf = (values) => values.reduce((a, b) => (b > a ? b : a), -Infinity);

/** Python's round(): halves to even. */
const roundHalfEven = (x) => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/** (width, height) of a height x width picture scaled so that its longest edge is `longest` (segmentation.fitted_size). */
function fittedSize(height, width, longest) {
  const scale = longest / Math.max(height, width);
  return [Math.max(1, roundHalfEven(width * scale)), Math.max(1, roundHalfEven(height * scale))];
}

/** Grey levels (Float32Array, 0-255, ITU-R 601 luma) of any canvas image source, transparency on white. */
export function readGrey(source, maxEdge = Infinity) {
  const sw = source.naturalWidth ?? source.videoWidth ?? source.width;
  const sh = source.naturalHeight ?? source.videoHeight ?? source.height;
  const [width, height] = Math.max(sw, sh) > maxEdge ? fittedSize(sh, sw, maxEdge) : [sw, sh];
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "#fff";
  context.fillRect(0, 0, width, height);
  context.imageSmoothingQuality = "high";
  context.drawImage(source, 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height).data;
  const grey = new Float32Array(width * height);
  for (let i = 0; i < grey.length; i++) {
    grey[i] = 0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2];
  }
  return { grey, width, height };
}

/** The median grey level of the outermost ring of pixels. */
function borderLevel({ grey, width, height }) {
  const ring = [];
  for (let x = 0; x < width; x++) ring.push(grey[x], grey[(height - 1) * width + x]);
  for (let y = 0; y < height; y++) ring.push(grey[y * width], grey[y * width + width - 1]);
  ring.sort((a, b) => a - b);
  const mid = ring.length >> 1;
  return ring.length % 2 ? ring[mid] : (ring[mid - 1] + ring[mid]) / 2;
}

/** The box [top, left, bottom, right) of the pixels where `inside(i)` holds, or null. */
function boundingBox(width, height, inside) {
  let top = height, left = width, bottom = -1, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (inside(y * width + x)) {
        top = Math.min(top, y); bottom = Math.max(bottom, y);
        left = Math.min(left, x); right = Math.max(right, x);
      }
    }
  }
  return bottom < 0 ? null : [top, left, bottom + 1, right + 1];
}

function crop(values, width, [top, left, bottom, right]) {
  const out = new Float32Array((bottom - top) * (right - left));
  for (let y = top; y < bottom; y++) out.set(values.subarray(y * width + left, y * width + right), (y - top) * (right - left));
  return out;
}

/** Area-average resampling (Pillow's BOX filter): each output pixel averages the input area it covers. */
function resizeArea(values, width, height, newWidth, newHeight) {
  const weights = (size, newSize) => {
    const step = size / newSize;
    return Array.from({ length: newSize }, (_, o) => {
      const start = o * step, end = start + step, parts = [];
      for (let i = Math.floor(start); i < Math.min(size, Math.ceil(end)); i++) {
        parts.push([i, Math.min(end, i + 1) - Math.max(start, i)]);
      }
      return parts;
    });
  };
  const xs = weights(width, newWidth), ys = weights(height, newHeight);
  const out = new Float32Array(newWidth * newHeight);
  for (let oy = 0; oy < newHeight; oy++) {
    for (let ox = 0; ox < newWidth; ox++) {
      let sum = 0, area = 0;
      for (const [y, wy] of ys[oy]) for (const [x, wx] of xs[ox]) { sum += values[y * width + x] * wy * wx; area += wy * wx; }
      out[oy * newWidth + ox] = sum / area;
    }
  }
  return out;
}

/** The object's mask: pixels at least OBJECT_LEVEL from the background's level, and every hole inside them. */
function objectMask({ grey, width, height }, background) {
  const object = grey.map((g) => (Math.abs(g - background) >= OBJECT_LEVEL ? 1 : 0));
  const outside = new Uint8Array(width * height); // background reached from the border without crossing the object
  const stack = [];
  for (let x = 0; x < width; x++) stack.push(x, (height - 1) * width + x);
  for (let y = 0; y < height; y++) stack.push(y * width, y * width + width - 1);
  while (stack.length) {
    const i = stack.pop();
    if (outside[i] || object[i]) continue;
    outside[i] = 1;
    const x = i % width;
    if (x > 0) stack.push(i - 1);
    if (x < width - 1) stack.push(i + 1);
    if (i >= width) stack.push(i - width);
    if (i < (height - 1) * width) stack.push(i + width);
  }
  return outside.map((o) => 1 - o);
}

/** Unsharp mask (Gaussian of radius 1, 100%), then the brightest pixel stretched to 255 (garment.py's _finish). */
function finish(canvas) {
  const kernel = [0.0545, 0.2442, 0.4026, 0.2442, 0.0545]; // Gaussian, sigma 1
  const blur = (values, dx, dy) => values.map((_, i) => {
    const x = i % SIZE, y = (i / SIZE) | 0;
    return kernel.reduce((sum, k, j) => {
      const cx = Math.min(SIZE - 1, Math.max(0, x + (j - 2) * dx)), cy = Math.min(SIZE - 1, Math.max(0, y + (j - 2) * dy));
      return sum + k * values[cy * SIZE + cx];
    }, 0);
  });
  const blurred = blur(blur(canvas, 1, 0), 0, 1);
  const sharp = canvas.map((v, i) => Math.min(255, Math.max(0, Math.round(2 * v - blurred[i]))));
  const max = maxOf(sharp);
  return max === 0 ? canvas : sharp.map((v) => Math.round((v * 255) / max));
}

/** The fashion-mnist pipeline on grey levels. */
function fashionStyle(image) {
  const { grey, width, height } = image;
  const background = borderLevel(image);
  const mask = objectMask(image, background);
  const box = boundingBox(width, height, (i) => mask[i]);
  const canvas = new Float32Array(SIZE * SIZE);
  if (!box) return canvas;
  const light = background >= 128;
  const garment = grey.map((g, i) => (light ? 255 - g : g) * mask[i]);
  const [cropHeight, cropWidth] = [box[2] - box[0], box[3] - box[1]];
  const [newWidth, newHeight] = fittedSize(cropHeight, cropWidth, SIZE);
  const small = resizeArea(crop(garment, width, box), cropWidth, cropHeight, newWidth, newHeight);
  const top = (SIZE - newHeight + 1) >> 1, left = (SIZE - newWidth + 1) >> 1;
  for (let y = 0; y < newHeight; y++) {
    for (let x = 0; x < newWidth; x++) canvas[(top + y) * SIZE + left + x] = Math.min(255, Math.max(0, Math.round(small[y * newWidth + x])));
  }
  return finish(canvas);
}

/** The mnist pipeline on grey levels (digits.py). */
function mnistStyle(image) {
  const { grey, width, height } = image;
  const paper = borderLevel(image);
  const ink = grey.map((g) => Math.max(0, paper >= 128 ? paper - g : g - paper));
  const canvas = new Float32Array(SIZE * SIZE);
  const strongest = maxOf(ink);
  if (strongest <= 0) return canvas;
  ink.forEach((v, i) => { if (v < INK_THRESHOLD * strongest) ink[i] = 0; });
  const box = boundingBox(width, height, (i) => ink[i] > 0);
  const [cropHeight, cropWidth] = [box[2] - box[0], box[3] - box[1]];
  const [newWidth, newHeight] = fittedSize(cropHeight, cropWidth, DIGIT_BOX);
  const digit = resizeArea(crop(ink, width, box), cropWidth, cropHeight, newWidth, newHeight);
  const max = maxOf(digit);
  let mass = 0, my = 0, mx = 0;
  digit.forEach((v, i) => { digit[i] = (v * 255) / max; mass += digit[i]; my += digit[i] * ((i / newWidth) | 0); mx += digit[i] * (i % newWidth); });
  const clamp = (v, hi) => Math.min(hi, Math.max(0, v));
  const top = clamp(roundHalfEven(DIGIT_CENTRE - my / mass), SIZE - newHeight);
  const left = clamp(roundHalfEven(DIGIT_CENTRE - mx / mass), SIZE - newWidth);
  for (let y = 0; y < newHeight; y++) {
    for (let x = 0; x < newWidth; x++) canvas[(top + y) * SIZE + left + x] = Math.round(digit[y * newWidth + x]);
  }
  return canvas;
}

/**
 * A model's 28x28 input, uint8, from a canvas, an image, an ImageBitmap or a video element, by the pipeline its input
 * spec names (`model.input.pipeline`, from the file's `fashionzoo.input` metadata).
 */
export function imageToPixels(source, input) {
  const image = readGrey(source, WORK_SIZE[input.pipeline]);
  let pixels;
  if (image.width === SIZE && image.height === SIZE && borderLevel(image) < 128) {
    pixels = image.grey; // already in the data set's format
  } else {
    pixels = input.pipeline === "mnist" ? mnistStyle(image) : fashionStyle(image);
  }
  return Uint8Array.from(pixels, (v) => Math.min(255, Math.max(0, Math.round(v))));
}

/** Paint 28x28 uint8 pixels into a 28x28 canvas (the picture the model saw; CSS may show it larger). */
export function drawPixels(canvas, pixels) {
  const context = canvas.getContext("2d");
  const image = context.createImageData(SIZE, SIZE);
  pixels.forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  context.putImageData(image, 0, 0);
}
