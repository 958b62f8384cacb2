// A fashionzoo ONNX model in a web page: onnxruntime-web runs it; what it needs to be used (its class names and
// input spec) is read from the file's own `fashionzoo.*` metadata, with protobufjs, since onnxruntime-web exposes
// no model metadata (only the inputs' and outputs' names, types and shapes).
//
//   import { loadModel } from "./zoo.js";
//   const model = await loadModel("models/cnn-small.mnist.onnx");
//   const pixels = imageToPixels(canvas, model.input);            // convert.js: 28x28 uint8, as the data set's images
//   const [best] = model.topK(await model.probabilities(pixels));  // { label: "7", classId: 7, probability: 0.99 }
//
// "onnxruntime-web" and "protobufjs" are resolved by the page's import map (index.html) to files in node_modules.
import * as ort from "onnxruntime-web";
import "protobufjs"; // protobufjs's browser build: it defines globalThis.protobuf

/** The metadata keys `fashionzoo export` writes (src/fashionzoo/runtime/metadata.py). */
export const KEYS = {
  model: "fashionzoo.model",
  dataset: "fashionzoo.dataset",
  classes: "fashionzoo.classes",
  input: "fashionzoo.input",
  preprocessing: "fashionzoo.preprocessing",
  testAccuracy: "fashionzoo.test_accuracy",
};
const PIPELINES = ["fashion-mnist", "mnist"];

// Just enough of onnx.proto3 to read ModelProto.metadata_props (field 14); the graph and every other field are
// skipped unread.
const MODEL_PROTO = globalThis.protobuf.Root.fromJSON({
  nested: {
    StringStringEntryProto: { fields: { key: { type: "string", id: 1 }, value: { type: "string", id: 2 } } },
    ModelProto: { fields: { metadataProps: { rule: "repeated", type: "StringStringEntryProto", id: 14 } } },
  },
}).lookupType("ModelProto");

/** The `metadata_props` of an ONNX file's bytes, as an object. */
export function readMetadata(bytes) {
  const model = MODEL_PROTO.decode(bytes);
  return Object.fromEntries(model.metadataProps.map((p) => [p.key, p.value]));
}

function parseJson(metadata, key, what) {
  if (!(key in metadata)) {
    throw new Error(`no ${key} metadata: not an ONNX file written by \`fashionzoo export\``);
  }
  try {
    return JSON.parse(metadata[key]);
  } catch {
    throw new Error(`metadata ${key} is not ${what}`);
  }
}

/** The class names and input spec the metadata gives, checked as the Python runtime checks them. */
export function modelFacts(metadata) {
  const classes = parseJson(metadata, KEYS.classes, "a JSON list of class names");
  if (!Array.isArray(classes) || !classes.length || !classes.every((c) => typeof c === "string" && c.trim())) {
    throw new Error(`metadata ${KEYS.classes} is not a JSON list of class names`);
  }
  const input = parseJson(metadata, KEYS.input, "a JSON input spec");
  const { height, width, channels, scale, pipeline } = input ?? {};
  if (height !== 28 || width !== 28 || channels !== 1 || !PIPELINES.includes(pipeline) || !(scale >= 1e-6 && scale <= 1)) {
    throw new Error(`unsupported input spec ${metadata[KEYS.input]} (28x28x1 images, a scale in [1e-6, 1])`);
  }
  return { classes, input: { height, width, channels, scale, pipeline } };
}

/** A zoo model: its ONNX Runtime session, metadata, class names and input spec. */
export class ZooModel {
  constructor(session, metadata, bytes) {
    Object.assign(this, modelFacts(metadata));
    this.session = session;
    this.metadata = metadata;
    this.name = metadata[KEYS.model] ?? "";
    this.bytes = bytes; // the file's size
  }

  /**
   * Class probabilities, a Float32Array of images x classes, for uint8 pixels (28x28 per image, several images one
   * after the other), run `batchSize` images at a time. Each pixel is multiplied by the spec's scale in float32, as
   * the Python runtime does it (pixel / float32(1 / scale)), so both see the same input to the last bit.
   */
  async probabilities(pixels, batchSize = 64) {
    const { height, width, channels, scale } = this.input;
    const size = height * width * channels;
    const count = pixels.length / size;
    if (!Number.isInteger(count)) throw new Error(`expected whole ${height}x${width} images, got ${pixels.length} pixels`);
    const divisor = Math.fround(1 / scale);
    const out = new Float32Array(count * this.classes.length);
    for (let start = 0; start < count; start += batchSize) {
      const n = Math.min(batchSize, count - start);
      const x = new Float32Array(n * size);
      for (let i = 0; i < x.length; i++) x[i] = pixels[start * size + i] / divisor;
      const feeds = { [this.session.inputNames[0]]: new ort.Tensor("float32", x, [n, height, width, channels]) };
      const result = await this.session.run(feeds);
      out.set(result[this.session.outputNames[0]].data, start * this.classes.length);
    }
    return out;
  }

  /** The `k` most probable classes of image `index` of `probs`: {label, classId, probability}, best first. */
  topK(probs, k = 3, index = 0) {
    const row = probs.subarray(index * this.classes.length, (index + 1) * this.classes.length);
    return Array.from(row, (probability, classId) => ({ label: this.classes[classId], classId, probability }))
      .sort((a, b) => b.probability - a.probability || a.classId - b.classId)
      .slice(0, k);
  }
}

/** Load a zoo ONNX file from a URL, a File or its bytes; `options` go to ort.InferenceSession.create. */
export async function loadModel(source, options = {}) {
  let bytes;
  if (source instanceof Uint8Array) {
    bytes = source;
  } else if (source instanceof Blob) {
    bytes = new Uint8Array(await source.arrayBuffer());
  } else {
    const response = await fetch(source);
    if (!response.ok) throw new Error(`${source}: HTTP ${response.status} ${response.statusText}`);
    bytes = new Uint8Array(await response.arrayBuffer());
  }
  const metadata = readMetadata(bytes); // first: a file that is not a zoo model is refused before the session starts
  modelFacts(metadata);
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], ...options });
  return new ZooModel(session, metadata, bytes.length);
}

export { ort };
