// Classify Fashion-MNIST style images (28x28 grayscale PNG, bright garment on a dark background) with a
// fashionzoo ONNX model and onnxruntime-node alone.
// Usage: node classify.mjs MODEL.onnx IMAGE.png [IMAGE.png ...]
import fs from "node:fs";
import ort from "onnxruntime-node";
import { PNG } from "pngjs";

// The order of the model's `fashionzoo.classes` metadata (onnxruntime-node does not expose custom metadata).
const CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
  "Ankle boot"];

function readImage(path) {
  const png = PNG.sync.read(fs.readFileSync(path));
  if (png.width !== 28 || png.height !== 28) {
    throw new Error(`${path}: expected a 28x28 image, got ${png.width}x${png.height} (run fashionzoo's preprocessing first)`);
  }
  const pixels = new Float32Array(28 * 28);
  for (let i = 0; i < pixels.length; i++) {
    const [r, g, b] = png.data.subarray(i * 4, i * 4 + 3);
    pixels[i] = (0.299 * r + 0.587 * g + 0.114 * b) / 255; // the model expects [0, 1]
  }
  return pixels;
}

const [modelPath, ...imagePaths] = process.argv.slice(2);
if (!modelPath || imagePaths.length === 0) {
  console.error("usage: node classify.mjs MODEL.onnx IMAGE.png [IMAGE.png ...]");
  process.exit(2);
}
const session = await ort.InferenceSession.create(modelPath);
const batch = new Float32Array(imagePaths.length * 28 * 28);
imagePaths.forEach((path, i) => batch.set(readImage(path), i * 28 * 28));
const input = new ort.Tensor("float32", batch, [imagePaths.length, 28, 28, 1]);
const { probabilities } = await session.run({ image: input });
imagePaths.forEach((path, i) => {
  const probs = Array.from(probabilities.data.subarray(i * 10, i * 10 + 10));
  const best = probs.indexOf(Math.max(...probs));
  console.log(JSON.stringify({ file: path, label: CLASSES[best], class_id: best, probability: probs[best] }));
});
