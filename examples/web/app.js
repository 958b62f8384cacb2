// The page: pick a zoo model, draw on the pad or pick a picture, see the 28x28 the model saw and its top 3.
// Everything runs in the browser (onnxruntime-web, WebAssembly). `window.fashionzoo` is the page's own interface for
// tests and measurements (tests/test_web_example.py, benchmarks/web_example.py).
//
// URL parameters: ?model=NAME (models/NAME.onnx, as serve.py serves the zoo's files) or ?model=URL of an ONNX file;
// ?threads=N for onnxruntime-web's WebAssembly threads (default: its own choice; more than 1 needs the page to be
// cross-origin isolated, as serve.py makes it).
import { KEYS, loadModel, ort } from "./zoo.js";
import { drawPixels, imageToPixels } from "./convert.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
if (params.has("threads")) ort.env.wasm.numThreads = Number(params.get("threads"));

let model = null;
let lastSource = null; // what was classified last (the pad or a picture): classified again with a newly chosen model
const last = { pixels: null, probabilities: null, answer: null, count: 0 };

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

const modelUrl = (name) => (name.includes("/") || name.endsWith(".onnx") ? name : `models/${name}.onnx`);

async function load(source, label) {
  status(`Loading ${label}…`);
  try {
    model = await loadModel(source);
  } catch (error) {
    status(`${label}: ${error.message}`, true);
    throw error;
  }
  const select = $("model-select");
  if (!(source instanceof Blob) && !Array.from(select.options, (o) => o.value).includes(label)) select.add(new Option(label, label));
  if (!(source instanceof Blob)) select.value = label;
  const { metadata, input, classes } = model;
  const facts = {
    model: metadata[KEYS.model] ?? label,
    "data set": metadata[KEYS.dataset],
    classes: classes.join(", "),
    input: `${input.height}x${input.width}x${input.channels}, pixel x ${input.scale.toPrecision(4)}, ${input.pipeline} pipeline`,
    preprocessing: metadata[KEYS.preprocessing],
    "test accuracy": metadata[KEYS.testAccuracy],
    file: `${(model.bytes / 1024).toFixed(0)} KiB`,
  };
  $("facts").replaceChildren(
    ...Object.entries(facts).filter(([, v]) => v).flatMap(([k, v]) => [
      Object.assign(document.createElement("dt"), { textContent: k }),
      Object.assign(document.createElement("dd"), { textContent: v }),
    ]),
  );
  $("pad-hint").textContent = `Draw one of: ${classes.join(", ")}.`;
  const threads = ort.env.wasm.numThreads || "auto";
  status(`${facts.model}: WebAssembly, threads ${threads}${crossOriginIsolated ? "" : " (not cross-origin isolated: 1)"}`);
  if (lastSource) await classify(lastSource);
  return facts;
}

function showAnswer(top) {
  $("answer").replaceChildren(
    ...top.map(({ label, probability }) => {
      const item = document.createElement("li");
      const bar = Object.assign(document.createElement("div"), { className: "bar" });
      bar.style.width = `${(probability * 100).toFixed(1)}%`;
      const name = Object.assign(document.createElement("span"), { textContent: label });
      const value = Object.assign(document.createElement("span"), { textContent: probability.toFixed(3) });
      item.append(name, bar, value);
      return item;
    }),
  );
}

async function classify(source) {
  lastSource = source;
  if (!model) return;
  const pixels = imageToPixels(source, model.input);
  const probabilities = await model.probabilities(pixels, 1);
  drawPixels($("seen"), pixels);
  const answer = model.topK(probabilities, 3);
  showAnswer(answer);
  Object.assign(last, { pixels, probabilities, answer, count: last.count + 1 });
}

// ---------------------------------------------------------------------------------------------------- the pad
const pad = $("pad");
const ink = pad.getContext("2d", { willReadFrequently: true });

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
}

let drawing = false;
let pending = null; // one classification at a time: a stroke that ends during one is classified after it
async function classifyPad() {
  if (pending) return;
  pending = classify(pad);
  await pending;
  pending = null;
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  ink.lineWidth = pad.width / 15;
  ink.lineCap = ink.lineJoin = "round";
  ink.strokeStyle = "#000";
  ink.beginPath();
  ink.moveTo(event.offsetX, event.offsetY);
  ink.lineTo(event.offsetX, event.offsetY);
  ink.stroke();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  ink.lineTo(event.offsetX, event.offsetY);
  ink.stroke();
});
pad.addEventListener("pointerup", async () => {
  drawing = false;
  if (pending) await pending;
  await classifyPad();
});
$("clear").addEventListener("click", () => {
  clearPad();
  lastSource = null;
  $("answer").replaceChildren();
});

// ------------------------------------------------------------------------------------------ pictures and models
$("image-file").addEventListener("change", async (event) => {
  const [file] = event.target.files;
  if (!file) return;
  $("picked").src = URL.createObjectURL(file);
  try {
    await classify(await createImageBitmap(file, { imageOrientation: "from-image" }));
  } catch (error) {
    status(`${file.name}: not a picture this browser can read (${error.message})`, true);
  }
});
$("model-file").addEventListener("change", (event) => {
  const [file] = event.target.files;
  if (file) load(file, file.name).catch(() => {});
});
$("model-select").addEventListener("change", (event) => {
  const name = event.target.value;
  history.replaceState(null, "", `?${new URLSearchParams({ ...Object.fromEntries(params), model: name })}`);
  load(modelUrl(name), name).catch(() => {});
});

async function start() {
  clearPad();
  let index = { models: [], default: null }; // the zoo's names, where the server lists them (serve.py does)
  try {
    const response = await fetch("models/index.json");
    if (response.ok) index = await response.json();
  } catch {} // a static server without the list: ?model= or a file
  const name = params.get("model") ?? index.default;
  const names = [...new Set([...(name ? [name] : []), ...index.models])];
  $("model-select").replaceChildren(...names.map((n) => new Option(n, n, false, n === name)));
  if (!name) {
    status("Choose an ONNX file exported by `fashionzoo export`, or open the page with ?model=URL");
    return null;
  }
  return load(modelUrl(name), name);
}

// ------------------------------------------------------------------------------------- the page's own interface
const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

window.fashionzoo = {
  ready: start(),
  last,
  get model() {
    return model;
  },
  /** Load another model (a zoo name or a URL); resolves to the facts shown. */
  load: (name) => load(modelUrl(name), name),
  /** Probabilities of 28x28 uint8 images sent as base64, as an array of rows. */
  async classifyPixels(base64, batchSize = 64) {
    const probs = await model.probabilities(fromBase64(base64), batchSize);
    const k = model.classes.length;
    return Array.from({ length: probs.length / k }, (_, i) => Array.from(probs.subarray(i * k, (i + 1) * k)));
  },
  /** Milliseconds per image of `model.probabilities` at `batchSize`, over `rounds` passes on the images given. */
  async timePerImage(base64, batchSize, rounds = 5) {
    const pixels = fromBase64(base64);
    const size = model.input.height * model.input.width * model.input.channels;
    const images = pixels.length / size;
    await model.probabilities(pixels.subarray(0, batchSize * size), batchSize); // warm-up
    const times = [];
    for (let r = 0; r < rounds; r++) {
      const start = performance.now();
      await model.probabilities(pixels, batchSize);
      times.push((performance.now() - start) / images);
    }
    times.sort((a, b) => a - b);
    return { median: times[rounds >> 1], min: times[0], threads: ort.env.wasm.numThreads, isolated: crossOriginIsolated };
  },
};
