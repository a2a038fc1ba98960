// The SAE explorer page: hybrid samples of a served model set, a base whose variables can be locked and the rest
// redrawn (BASE/MASK of hybrid_sample), uploads encoded as the base, traversals, side-by-side grids, downloads.
// Every call goes to the explorer's JSON endpoints (/api/...), which call Triton through the Python client.
"use strict";

const $ = (id) => document.getElementById(id);

// Everything the page shows, readable from outside (the browser tests read it): the last grid, the base, the locks.
const state = {
  sets: [], set: null, grid: null, base: null, locks: [], strips: null, slider: null, compare: null,
  lastAction: null, error: null, poll: null, timings: [],
  renders: { grid: 0, base: 0, upload: 0, traversals: 0, slider: 0, compare: 0, sets: 0, refused: 0 },
};
window.explorer = state;

class RequestError extends Error {
  constructor(message, down) { super(message); this.down = down; }  // down: the server or the model is not there
}

async function api(path, body, raw) {
  const options = body === undefined && raw === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": raw !== undefined ? "application/octet-stream" : "application/json" },
    body: raw !== undefined ? raw : JSON.stringify(body),
  };
  const start = performance.now();
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new RequestError(`the explorer does not answer (${e.message})`, true);
  }
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.blob();
  if (!response.ok) {
    throw new RequestError(data && data.error ? data.error : `HTTP ${response.status}`, response.status >= 500);
  }
  return { data, ms: performance.now() - start };
}

function log(what, servedMs, pageMs) {
  const served = servedMs === undefined ? "" : `served ${servedMs.toFixed(1)} ms, `;
  state.timings.push({ what, served_ms: servedMs, page_ms: pageMs });
  const item = document.createElement("li");
  item.textContent = `${what}: ${served}in the page ${pageMs.toFixed(1)} ms`;
  $("log").prepend(item);
  while ($("log").children.length > 8) $("log").lastChild.remove();
  const set = state.set;
  $("status").textContent = `${set ? set.label : "-"} · version ${set ? set.version : "-"} · draw ` +
    `${state.grid ? state.grid.draw_mode || "prior" : "-"} · last request ${what}: ${served}` +
    `in the page ${pageMs.toFixed(1)} ms`;
}

function showError(e) {
  state.error = e.message;
  $("error").textContent = e.down ? `Server error: ${e.message}. Retrying when the server is back…`
    : `Refused: ${e.message}`;
  $("error").hidden = false;
  if (e.down) startPolling();
}

function clearError() {
  state.error = null;
  $("error").hidden = true;
  $("error").textContent = "";
}

// After a server error: ask for the sets until the chosen one is ready again, then repeat the last action.
function startPolling() {
  if (state.poll) return;
  state.poll = setInterval(async () => {
    try {
      const { data } = await api("/api/sets");
      const again = data.sets.find((s) => state.set && s.name === state.set.name && s.ready);
      if (!again) return;
      clearInterval(state.poll);
      state.poll = null;
      updateSets(data.sets);
      clearError();
      if (state.lastAction) await run(state.lastAction.name, state.lastAction.action);
    } catch (e) { /* still down */ }
  }, 1000);
}

async function run(name, action) {
  state.lastAction = { name, action };
  document.body.classList.add("busy");
  try {
    await action();
    clearError();
  } catch (e) {
    showError(e);
  } finally {
    document.body.classList.remove("busy");
  }
}

async function showImages(container, urls, onClick) {
  const images = urls.map((url, i) => {
    const img = new Image();
    img.src = url;
    img.dataset.index = i;
    img.alt = `sample ${i}`;
    if (onClick) img.addEventListener("click", () => onClick(i));
    return img;
  });
  container.style.setProperty("--cols", Math.ceil(Math.sqrt(urls.length)));
  container.replaceChildren(...images);
  await Promise.all(images.map((img) => img.decode().catch(() => {})));
  return images;
}

// ------------------------------------------------------------------------------------------- sets

function updateSets(sets) {
  state.sets = sets;
  const select = $("model");
  const chosen = state.set ? state.set.name : null;
  select.replaceChildren(...sets.map((s) => {
    const option = new Option(`${s.label}${s.ready ? "" : " (not ready)"}`, s.name);
    option.disabled = !s.ready;
    return option;
  }));
  const ready = sets.filter((s) => s.ready);
  state.set = sets.find((s) => s.name === chosen && s.ready) || ready[0] || null;
  if (state.set) select.value = state.set.name;
  showSetInfo();
  state.renders.sets += 1;
}

function showSetInfo() {
  const s = state.set;
  if (!s) {
    $("set-info").textContent = "no ready model set on the server";
    return;
  }
  $("set-info").textContent = `version ${s.version} · draw ${s.draw_modes.join("/")} · ` +
    `${s.has_prior ? "has a prior" : "no prior"} · ${s.num_variables} variables, ${s.latent_dim} dimensions`;
  const draw = $("draw");
  const previous = draw.value;
  draw.replaceChildren(...s.draw_modes.map((m) => new Option(m, m)));
  if (s.draw_modes.includes(previous)) draw.value = previous;
  const compare = $("compare");
  const was = compare.value;
  const options = [new Option("nothing", "")];
  if (s.has_prior) options.push(new Option("prior samples of this set", "prior"));
  for (const other of state.sets) {
    if (other.ready && other.name !== s.name) options.push(new Option(`set ${other.label}`, `set:${other.name}`));
  }
  compare.replaceChildren(...options);
  if (options.some((o) => o.value === was)) compare.value = was;
}

async function loadSets() {
  const { data } = await api("/api/sets");
  updateSets(data.sets);
  if (!state.set) throw new RequestError("no model set is ready on the server", true);
}

// ------------------------------------------------------------------------------------------- samples

function sampleCount() {
  const n = Math.round(Number($("n").value));
  if (!(n >= 4 && n <= 64)) throw new RequestError("the grid holds 4 to 64 samples", false);
  return n;
}

function seedValue() {
  const seed = Number($("seed").value);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RequestError("the seed is a whole number, 0 or more", false);
  return seed;
}

async function drawGrid(withBase) {
  const start = performance.now();
  const body = { model: state.set.name, n: sampleCount(), seed: seedValue(), draw: $("draw").value || null };
  if (withBase) {
    body.base = state.base.latent;
    body.mask = state.locks.map((locked) => !locked);  // MASK true = re-draw the variable
  }
  const { data, ms } = await api("/api/sample", body);
  state.grid = { ...data, model: body.model, base: withBase ? body.base : null, mask: withBase ? body.mask : null,
                 fetch_ms: ms };
  const images = await showImages($("grid"), data.images, selectBase);
  images.forEach((img, i) => { img.title = `SOURCE_INDEX ${data.source_index[i].join(", ")}`; });
  $("download-png").disabled = $("download-npz").disabled = false;
  state.renders.grid += 1;
  const pageMs = performance.now() - start;
  state.grid.page_ms = pageMs;
  log(`${withBase ? "redraw" : "sample"} ${body.n}`, data.served_ms, pageMs);
  await drawCompare();
}

async function drawCompare() {
  const choice = $("compare").value;
  if (!choice || !state.grid) {
    $("compare-grid").replaceChildren();
    $("compare-label").textContent = "";
    state.compare = null;
    return;
  }
  const start = performance.now();
  const n = state.grid.images.length;
  const seed = state.grid.seed;
  let result;
  if (choice === "prior") {
    result = (await api("/api/prior", { model: state.set.name, n, seed })).data;
    $("compare-label").textContent = `prior samples of ${state.set.label}, seed ${seed}`;
  } else {
    const other = choice.slice(4);
    result = (await api("/api/sample", { model: other, n, seed, draw: $("draw").value || null })).data;
    $("compare-label").textContent = `hybrid samples of ${other || "(unprefixed)"}, seed ${seed}`;
  }
  state.compare = { choice, ...result };
  await showImages($("compare-grid"), result.images);
  state.renders.compare += 1;
  log(`compare ${choice}`, result.served_ms, performance.now() - start);
}

// ------------------------------------------------------------------------------------------- the base

function selectBase(i) {
  const g = state.grid;
  setBase({ latent: g.latents[i], source_index: g.source_index[i], image: g.images[i],
            origin: `sample ${i} of seed ${g.seed}${g.base ? " (redraw)" : ""}` });
  [...$("grid").children].forEach((img, j) => img.classList.toggle("base", j === i));
  run("traversals", drawTraversals);
}

function setBase(base) {
  const variables = state.set.num_variables;
  if (!state.base || state.locks.length !== variables) state.locks = new Array(variables).fill(false);
  state.base = base;
  $("base-image").src = base.image;
  $("base-origin").textContent = base.origin;
  $("redraw").disabled = !state.set.locks;
  $("clear-base").disabled = false;
  showVariables();
  state.renders.base += 1;
}

function dimsOf(k) {
  return state.set.variable_of_dim.map((v, d) => (v === k ? d : -1)).filter((d) => d >= 0);
}

function showVariables() {
  const base = state.base;
  const rows = state.locks.map((locked, k) => {
    const dims = dimsOf(k);
    const row = document.createElement("tr");
    row.className = locked ? "locked" : "";
    const lock = document.createElement("input");
    lock.type = "checkbox";
    lock.id = `lock-${k}`;
    lock.className = "lock";
    lock.checked = locked;
    lock.addEventListener("change", () => { state.locks[k] = lock.checked; row.className = lock.checked ? "locked" : ""; });
    const source = !base.source_index ? "upload"
      : base.source_index.length === state.locks.length ? String(base.source_index[k])
        : dims.map((d) => base.source_index[d]).join(", ");
    const cells = [`v${k}`, lock, dims.map((d) => base.latent[d].toFixed(4)).join(", "), source];
    for (const content of cells) {
      const cell = document.createElement("td");
      if (typeof content === "string") cell.textContent = content; else cell.append(content);
      row.append(cell);
    }
    row.dataset.variable = k;
    return row;
  });
  $("variables").tBodies[0].replaceChildren(...rows);
}

function clearBase() {
  state.base = null;
  $("base-image").removeAttribute("src");
  $("base-origin").textContent = "no base yet";
  $("variables").tBodies[0].replaceChildren();
  $("traversals").replaceChildren();
  $("redraw").disabled = $("clear-base").disabled = true;
  $("slider").disabled = true;
  [...$("grid").children].forEach((img) => img.classList.remove("base"));
}

// ------------------------------------------------------------------------------------------- traversals

async function drawTraversals() {
  const start = performance.now();
  const { data } = await api("/api/traverse", { model: state.set.name, latent: state.base.latent });
  state.strips = data.strips;
  const rows = await Promise.all(data.strips.map(async (strip) => {
    const row = document.createElement("div");
    row.className = "strip";
    const label = document.createElement("span");
    label.textContent = `dim ${strip.dimension} (v${state.set.variable_of_dim[strip.dimension]})`;
    const holder = document.createElement("div");
    holder.className = "strip";
    await showImages(holder, strip.images);
    row.append(label, holder);
    return row;
  }));
  $("traversals").replaceChildren(...rows);
  const select = $("slider-dim");
  const was = select.value;
  select.replaceChildren(...data.strips.map((s) => new Option(`dim ${s.dimension}`, s.dimension)));
  if (was !== "" && Number(was) < data.strips.length) select.value = was;
  setSlider();
  state.renders.traversals += 1;
  log("traversals", data.served_ms, performance.now() - start);
}

function setSlider() {
  const d = Number($("slider-dim").value);
  const strip = state.strips[d];
  const slider = $("slider");
  slider.min = strip.min;
  slider.max = strip.max;
  slider.step = (strip.max - strip.min) / 100 || 0.01;
  slider.value = state.base.latent[d];
  slider.disabled = false;
  $("slider-value").textContent = `dim ${d} = ${state.base.latent[d].toFixed(4)}`;
}

let sliderBusy = false;
let sliderAgain = false;

async function moveSlider() {
  if (sliderBusy) { sliderAgain = true; return; }
  sliderBusy = true;
  try {
    do {
      sliderAgain = false;
      const d = Number($("slider-dim").value);
      const latent = state.base.latent.slice();
      latent[d] = Number($("slider").value);
      const start = performance.now();
      const { data } = await api("/api/decode", { model: state.set.name, latent });
      const img = $("slider-image");
      img.src = data.image;
      img.hidden = false;
      await img.decode().catch(() => {});
      state.slider = { dimension: d, latent: data.latent, image: data.image };
      $("slider-value").textContent = `dim ${d} = ${latent[d].toFixed(4)}`;
      state.renders.slider += 1;
      log(`move dim ${d}`, data.served_ms, performance.now() - start);
    } while (sliderAgain);
  } finally {
    sliderBusy = false;
  }
}

// ------------------------------------------------------------------------------------------- uploads, downloads

async function uploadImage(file) {
  const start = performance.now();
  const message = $("upload-message");
  message.className = "message";
  message.textContent = `encoding ${file.name}…`;
  let data;
  try {
    data = (await api(`/api/upload?model=${encodeURIComponent(state.set.name)}`, undefined, file)).data;
  } catch (e) {
    if (e.down) throw e;
    message.textContent = `${file.name} refused: ${e.message}`;
    state.renders.refused += 1;
    return;
  }
  $("upload-image").src = data.image;
  $("reconstruction").src = data.reconstruction;
  $("upload-image").hidden = $("reconstruction").hidden = false;
  $("upload-caption").textContent = `${file.name} (${data.note})`;
  $("reconstruction-caption").textContent = "its reconstruction (decoded latent)";
  await Promise.all([$("upload-image").decode(), $("reconstruction").decode()].map((p) => p.catch(() => {})));
  message.className = "message ok";
  message.textContent = `${file.name} encoded: it is the base now`;
  state.upload = data;
  setBase({ latent: data.latent, source_index: null, image: data.reconstruction, origin: `upload ${file.name}` });
  state.renders.upload += 1;
  log("upload", data.served_ms, performance.now() - start);
  await drawTraversals();
}

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function downloadPng() {
  const images = [...$("grid").children];
  const cols = Math.ceil(Math.sqrt(images.length));
  const side = images[0].naturalWidth;
  const pad = 2;
  const canvas = document.createElement("canvas");
  canvas.width = cols * (side + pad) + pad;
  canvas.height = Math.ceil(images.length / cols) * (side + pad) + pad;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  images.forEach((img, i) => ctx.drawImage(img, pad + (i % cols) * (side + pad), pad + Math.floor(i / cols) * (side + pad)));
  canvas.toBlob((blob) => download(blob, `grid_seed${state.grid.seed}.png`), "image/png");
}

async function downloadNpz() {
  const g = state.grid;
  const { data } = await api("/api/npz", { latents: g.latents, source_index: g.source_index, seed: g.seed,
                                           model: g.model, draw_mode: g.draw_mode });
  download(data, `samples_seed${g.seed}.npz`);
}

// ------------------------------------------------------------------------------------------- wiring

function wire() {
  $("sample").addEventListener("click", () => run("sample", () => drawGrid(false)));
  $("redraw").addEventListener("click", () => run("redraw", () => drawGrid(true)));
  $("new-seed").addEventListener("click", () => {
    $("seed").value = Math.floor(Math.random() * 2 ** 31);
    run(state.base ? "redraw" : "sample", () => drawGrid(Boolean(state.base)));
  });
  $("clear-base").addEventListener("click", clearBase);
  $("model").addEventListener("change", () => {
    state.set = state.sets.find((s) => s.name === $("model").value);
    clearBase();
    showSetInfo();
    run("sample", () => drawGrid(false));
  });
  $("compare").addEventListener("change", () => run("compare", drawCompare));
  $("slider-dim").addEventListener("change", () => { if (state.base && state.strips) setSlider(); });
  $("slider").addEventListener("input", () => run("move", moveSlider));
  $("upload").addEventListener("change", () => {
    const file = $("upload").files[0];
    if (file) run("upload", () => uploadImage(file));
    $("upload").value = "";
  });
  $("download-png").addEventListener("click", downloadPng);
  $("download-npz").addEventListener("click", () => run("download", downloadNpz));
}

wire();
run("start", async () => { await loadSets(); await drawGrid(false); });
