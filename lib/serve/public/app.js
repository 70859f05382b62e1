// Anomaly Spotter web page: pick a model, drop images, see verdicts and heatmaps.
// Plain ES module, no build step: talks to the same server's /v1 API.
const $ = (sel) => document.querySelector(sel);
const TOKEN_KEY = 'anomaly_spotter_token';

const state = { models: [], token: localStorage.getItem(TOKEN_KEY) || '' };

function setStatus(text, isError = false) {
  const el = $('#status');
  el.textContent = text;
  el.classList.toggle('error', isError);
}

function authHeaders() {
  return state.token ? { authorization: `Bearer ${state.token}` } : {};
}

function saveToken(token) {
  state.token = token;
  localStorage.setItem(TOKEN_KEY, token);
  // Report pages are opened by plain links (no headers): the server also accepts the token as a cookie.
  // biome-ignore lint/suspicious/noDocumentCookie: a plain cookie is all report links need; no library here
  document.cookie = `${TOKEN_KEY}=${encodeURIComponent(token)}; path=/; SameSite=Strict`;
}

async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });
  const body = await res.json().catch(() => null);
  if (res.status === 401) {
    $('#token-box').hidden = false;
    $('#token').focus();
  }
  if (!res.ok) {
    const msg = body?.error?.message || `HTTP ${res.status}`;
    const err = new Error(msg);
    err.status = res.status;
    throw err;
  }
  return body;
}

async function loadModels() {
  try {
    const { models } = await api('/v1/models');
    state.models = models;
    const select = $('#model');
    select.replaceChildren(
      ...models.map((m) => {
        const o = document.createElement('option');
        o.value = m.category;
        o.textContent = `${m.category} (${m.pipeline} / ${m.runId})`;
        return o;
      }),
    );
    showModelInfo();
    setStatus(models.length ? 'Ready: drop images to score them.' : 'No models loaded.', !models.length);
  } catch (err) {
    setStatus(
      err.status === 401 ? 'Enter the access token to continue.' : `Cannot load models: ${err.message}`,
      true,
    );
  }
}

function showModelInfo() {
  const m = state.models.find((x) => x.category === $('#model').value);
  $('#model-info').textContent = m
    ? `${m.imageSize}px · threshold ${fmt(m.calibration.imageThreshold)} (${m.calibration.strategy})`
    : '';
}

const fmt = (v) => (Math.abs(v) >= 100 || Math.abs(v) < 0.001 ? v.toExponential(3) : v.toFixed(4));

function newCard(file) {
  const card = $('#card').content.firstElementChild.cloneNode(true);
  card.querySelector('.name').textContent = file.name;
  card.querySelector('.verdict').textContent = 'scoring…';
  const url = URL.createObjectURL(file);
  card.querySelector('.original').src = url;
  card.querySelector('.base').src = url;
  card.querySelector('.heatmap').style.opacity = String($('#opacity').value / 100);
  $('#results').prepend(card);
  return card;
}

function fillCard(card, r) {
  const verdict = card.querySelector('.verdict');
  verdict.textContent = r.verdict;
  verdict.className = `verdict ${r.verdict}`;
  card.dataset.verdict = r.verdict;
  card.querySelector('.heatmap').src = r.heatmap;
  card.querySelector('.mask').src = r.mask;
  card.querySelector('.score').textContent = fmt(r.score);
  card.querySelector('.meter').value = r.normalisedScore;
  card.querySelector('.norm').textContent = r.normalisedScore.toFixed(3);
  card.querySelector('.threshold').textContent = fmt(r.threshold);
  card.querySelector('.area').textContent = `${(r.defectArea * 100).toFixed(1)} %`;
}

function failCard(card, message) {
  const verdict = card.querySelector('.verdict');
  verdict.textContent = 'error';
  card.dataset.verdict = 'error';
  const p = card.querySelector('.error');
  p.hidden = false;
  p.textContent = message;
}

async function scoreFiles(files) {
  const category = $('#model').value;
  let done = 0;
  // One request per image, in order: results appear as they come and a bad file fails alone.
  for (const file of files) {
    const card = newCard(file);
    setStatus(`Scoring ${file.name} (${done + 1}/${files.length})…`);
    const form = new FormData();
    form.append('category', category);
    form.append('image', file, file.name);
    try {
      fillCard(card, await api('/v1/predict', { method: 'POST', body: form }));
    } catch (err) {
      failCard(card, err.message);
    }
    done++;
  }
  setStatus(`Scored ${done} image${done === 1 ? '' : 's'}.`);
}

function init() {
  if (state.token) saveToken(state.token);
  $('#model').addEventListener('change', showModelInfo);
  $('#token').addEventListener('change', (e) => {
    saveToken(e.target.value.trim());
    loadModels();
  });
  $('#file').addEventListener('change', (e) => {
    if (e.target.files.length) scoreFiles([...e.target.files]);
    e.target.value = '';
  });
  $('#opacity').addEventListener('input', (e) => {
    for (const img of document.querySelectorAll('.heatmap')) img.style.opacity = String(e.target.value / 100);
  });
  const drop = $('#drop');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const files = [...e.dataTransfer.files];
    if (files.length) scoreFiles(files);
  });
  loadModels();
}

init();
