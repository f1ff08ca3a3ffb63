// RadSynth web reader: one case at a time, slices fetched by position index, windowed here in the browser.
// The page knows the reader's token (from its own URL) and case positions only; it never sees a case id.
"use strict";

(function () {
  const token = location.pathname.split("/")[2];
  const api = "/r/" + token + "/api";
  const $ = (id) => document.getElementById(id);

  let study = null;          // /api/state
  let current = null;        // /api/case/<pos>
  let slices = new Map();    // slice index -> Int16Array of the current case
  let sliceIndex = 0;
  let win = null;            // {window, level}
  let bounds = null;         // window/level range the presets span
  let lut = null;
  let prefetchAbort = null;
  let timer = null;
  let drawnCase = -1;

  // -- requests -------------------------------------------------------------------------------------------------------
  async function getJSON(url, options) {
    const response = await fetch(url, Object.assign({ cache: "no-store" }, options || {}));
    const body = await response.json().catch(() => ({ error: "The server sent an unreadable reply." }));
    if (!response.ok) throw new Error(body.error || ("Request failed (" + response.status + ")"));
    return body;
  }

  async function getSlice(pos, k, signal) {
    const response = await fetch(api + "/case/" + pos + "/slice/" + k, { cache: "no-store", signal: signal });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      const error = new Error(body.error || ("Slice request failed (" + response.status + ")"));
      error.status = response.status;
      throw error;
    }
    return new Int16Array(await response.arrayBuffer());
  }

  // -- window / level -------------------------------------------------------------------------------------------------
  function setWindow(window, level) {
    window = Math.min(bounds.wMax, Math.max(bounds.wMin, window));
    level = Math.min(bounds.lMax, Math.max(bounds.lMin, level));
    win = { window: window, level: level };
    lut = new Uint8ClampedArray(65536);
    const low = level - window / 2;
    for (let v = 0; v < 65536; v++) lut[v] = ((v - 32768 - low) / window) * 255;
    $("window-level").textContent = "W " + Math.round(window) + "  L " + Math.round(level);
    for (const button of $("presets").children) {
      const p = study.presets[Number(button.dataset.index)];
      button.setAttribute("aria-pressed", String(p.window === window && p.level === level));
    }
    draw();
  }

  function setupPresets() {
    const ws = study.presets.map((p) => p.window), ls = study.presets.map((p) => p.level);
    bounds = { wMin: Math.min(...ws), wMax: Math.max(...ws), lMin: Math.min(...ls), lMax: Math.max(...ls) };
    const box = $("presets");
    box.textContent = "";
    study.presets.forEach((p, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = p.name;
      b.dataset.index = String(i);
      b.addEventListener("click", () => setWindow(p.window, p.level));
      box.appendChild(b);
    });
  }

  // -- drawing --------------------------------------------------------------------------------------------------------
  function draw() {
    const canvas = $("slice");
    const ctx = canvas.getContext("2d");
    const data = current && slices.get(sliceIndex);
    if (!data || !lut || !$("time-up").hidden) {
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      return;
    }
    const image = ctx.createImageData(current.size, current.size);
    const px = image.data;
    for (let i = 0, j = 0; i < data.length; i++, j += 4) {
      const g = lut[data[i] + 32768];
      px[j] = g; px[j + 1] = g; px[j + 2] = g; px[j + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
    canvas.dataset.slice = String(sliceIndex);
    if (drawnCase !== current.position) {
      drawnCase = current.position;
      document.body.dataset.shown = String(current.position);   // tests and the timing benchmark wait on this
      document.body.dataset.shownAt = String(performance.now());
    }
  }

  async function showSlice(k) {
    if (!current) return;
    k = Math.max(0, Math.min(current.slices - 1, k));
    sliceIndex = k;
    $("slice-slider").value = String(k);
    $("slice-number").textContent = (k + 1) + " / " + current.slices;
    if (!slices.has(k)) {
      const pos = current.position;
      try {
        const data = await getSlice(pos, k);
        if (current && current.position === pos) slices.set(k, data);
      } catch (error) {
        if (error.status === 410) timeUp(); else message(error.message);
        return;
      }
    }
    if (sliceIndex === k) draw();
  }

  // Fetch the rest of the case outwards from the shown slice, two at a time, so that scrolling is instant.
  async function prefetchSlices(pos, start) {
    if (prefetchAbort) prefetchAbort.abort();
    prefetchAbort = new AbortController();
    const signal = prefetchAbort.signal;
    const wanted = [];
    for (let d = 1; d < current.slices; d++) {
      if (start + d < current.slices) wanted.push(start + d);
      if (start - d >= 0) wanted.push(start - d);
    }
    const worker = async () => {
      while (wanted.length && !signal.aborted) {
        const k = wanted.shift();
        if (slices.has(k)) continue;
        try {
          const data = await getSlice(pos, k, signal);
          if (current && current.position === pos) slices.set(k, data);
        } catch (error) {
          return;
        }
      }
    };
    await Promise.all([worker(), worker()]);
  }

  // -- questions ------------------------------------------------------------------------------------------------------
  function buildQuestions() {
    const box = $("questions");
    box.textContent = "";
    for (const q of study.questions) {
      const set = document.createElement("fieldset");
      set.dataset.question = q.id;
      const legend = document.createElement("legend");
      legend.textContent = q.text || q.id;
      set.appendChild(legend);
      if (q.kind === "text") {
        const area = document.createElement("textarea");
        area.name = q.id;
        area.maxLength = 10000;
        set.appendChild(area);
      } else {
        const values = q.kind === "choice" ? q.choices : range(q.min, q.max);
        for (const v of values) {
          const label = document.createElement("label");
          const input = document.createElement("input");
          input.type = "radio";
          input.name = q.id;
          input.value = String(v);
          input.required = true;
          label.appendChild(input);
          label.appendChild(document.createTextNode(" " + v));
          set.appendChild(label);
        }
      }
      box.appendChild(set);
    }
  }

  function range(a, b) { const out = []; for (let v = a; v <= b; v++) out.push(v); return out; }

  function fillAnswers(answers, editable) {
    const form = $("answer-form");
    form.reset();
    for (const q of study.questions) {
      const value = answers ? answers[q.id] : undefined;
      if (q.kind === "text") {
        form.elements[q.id].value = value || "";
      } else if (value !== undefined) {
        for (const input of form.querySelectorAll('input[name="' + q.id + '"]')) {
          input.checked = input.value === String(value);
        }
      }
    }
    for (const el of form.querySelectorAll("input, textarea")) el.disabled = !editable;
  }

  function collectAnswers() {
    const form = $("answer-form");
    const out = {};
    for (const q of study.questions) {
      if (q.kind === "text") {
        const text = form.elements[q.id].value.trim();
        if (text) out[q.id] = text;
      } else {
        const checked = form.querySelector('input[name="' + q.id + '"]:checked');
        if (checked) out[q.id] = q.kind === "scale" ? Number(checked.value) : checked.value;
      }
    }
    return out;
  }

  // -- moving between cases -------------------------------------------------------------------------------------------
  function message(text) { $("message").textContent = text || ""; }

  function timeUp() {
    $("time-up").hidden = false;
    if (prefetchAbort) prefetchAbort.abort();
    draw();
  }

  function startTimer(seconds) {
    clearInterval(timer);
    $("timer").hidden = seconds === null;
    if (seconds === null) return;
    const end = Date.now() + seconds * 1000;
    const tick = () => {
      const left = Math.max(0, Math.round((end - Date.now()) / 1000));
      $("timer").textContent = "Time left: " + left + " s";
      if (left === 0) { clearInterval(timer); timeUp(); }
    };
    tick();
    timer = setInterval(tick, 500);
  }

  async function openCase(pos) {
    message("");
    if (prefetchAbort) prefetchAbort.abort();
    current = null;
    slices = new Map();
    draw();
    const info = await getJSON(api + "/case/" + pos);
    current = info;
    $("reading").hidden = false;
    $("finished").hidden = true;
    $("progress").textContent = "Case " + (pos + 1) + " of " + info.total;
    document.body.dataset.position = String(pos);
    const canvas = $("slice");
    canvas.width = info.size;
    canvas.height = info.size;
    $("slice-slider").max = String(info.slices - 1);
    $("time-up").hidden = info.time_left_s !== 0;
    fillAnswers(info.answers, info.editable);
    $("save").hidden = !info.editable;
    $("skip-next").hidden = info.editable;
    $("previous").hidden = study.no_going_back || pos === 0;
    startTimer(info.time_left_s);
    setWindow(study.presets[0].window, study.presets[0].level);   // every case starts in the same display
    const middle = Math.floor(info.slices / 2);
    if (info.time_left_s !== 0) {
      await showSlice(middle);
      prefetchSlices(pos, middle);
    } else {
      $("slice-number").textContent = "";
    }
  }

  function finished() {
    current = null;
    clearInterval(timer);
    $("timer").hidden = true;
    $("reading").hidden = true;
    $("finished").hidden = false;
    $("progress").textContent = "Finished";
    $("review").hidden = study.no_going_back;
    document.body.dataset.position = "done";
  }

  async function goTo(pos) {
    try {
      if (pos >= study.total) finished(); else await openCase(pos);
    } catch (error) {
      message(error.message);
    }
  }

  async function save(event) {
    event.preventDefault();
    if (!current) return;
    const pos = current.position;
    $("save").disabled = true;
    try {
      await getJSON(api + "/case/" + pos + "/answer", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(collectAnswers()),
      });
      await goTo(pos + 1);
    } catch (error) {
      message(error.message);
    } finally {
      $("save").disabled = false;
    }
  }

  // -- input ----------------------------------------------------------------------------------------------------------
  function setupInput() {
    const canvas = $("slice");
    canvas.addEventListener("wheel", (e) => { e.preventDefault(); showSlice(sliceIndex + (e.deltaY > 0 ? 1 : -1)); },
      { passive: false });
    canvas.addEventListener("keydown", (e) => {
      const step = { ArrowUp: -1, ArrowDown: 1, PageUp: -10, PageDown: 10 }[e.key];
      if (step) { e.preventDefault(); showSlice(sliceIndex + step); }
    });
    $("slice-slider").addEventListener("input", (e) => showSlice(Number(e.target.value)));
    let drag = null;
    canvas.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, window: win.window, level: win.level };
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const scale = (bounds.wMax - bounds.wMin + 200) / 400;
      setWindow(drag.window + (e.clientX - drag.x) * scale, drag.level + (e.clientY - drag.y) * scale);
    });
    canvas.addEventListener("pointerup", () => { drag = null; });
    $("answer-form").addEventListener("submit", save);
    $("previous").addEventListener("click", () => current && goTo(current.position - 1));
    $("skip-next").addEventListener("click", () => current && goTo(current.position + 1));
    $("review").addEventListener("click", () => goTo(0));
  }

  async function start() {
    try {
      study = await getJSON(api + "/state");
    } catch (error) {
      $("progress").textContent = error.message;
      return;
    }
    setupPresets();
    buildQuestions();
    setupInput();
    setWindow(study.presets[0].window, study.presets[0].level);
    await goTo(study.position);
  }

  start();
})();
