// Submission: pick or drop one or many files; each upload gets a line that follows its job
// live (pages rendered and OCRed, the current stage) to its outcome.

import { ApiError, call, getJson, stage, watch } from './api.js';

/** Fills the pipeline choice from /v1/pipelines; returns the pipelines. */
export async function loadPipelines(select) {
  const { pipelines } = await getJson('/v1/pipelines');
  const chosen = select.value;
  select.replaceChildren(...pipelines.map((p) => new Option(p.name, p.name)));
  if (pipelines.some((p) => p.name === chosen)) select.value = chosen;
  return pipelines;
}

/** Wires the file input and the drop zone; `onChange` runs when a job starts or ends. */
export function setUp({ form, select, input, zone, list, onChange }) {
  const submitAll = (files) => {
    for (const file of files) follow(file, select.value, list, onChange);
  };
  form.addEventListener('submit', (event) => event.preventDefault());
  input.addEventListener('change', () => {
    submitAll([...input.files]);
    input.value = '';
  });
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    submitAll([...event.dataTransfer.files]);
  });
}

const wait = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

/** Posts `file`; while the pipeline is full (429), says when it retries and retries then. */
async function submit(file, pipeline, show) {
  for (;;) {
    const form = new FormData();
    form.append('file', file, file.name);
    try {
      const response = await call(`/v1/pipelines/${encodeURIComponent(pipeline)}/jobs`, {
        method: 'POST',
        body: form,
      });
      return await response.json();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 429) throw error;
      const seconds = error.retryAfter || 5;
      show('waiting', `the pipeline is full (${error.code}): trying again in ${seconds} s`);
      await wait(seconds);
    }
  }
}

/** One upload's line: submits the file and follows its job to the end. */
async function follow(file, pipeline, list, onChange) {
  const item = document.createElement('li');
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = file.name;
  const progress = document.createElement('progress');
  progress.max = 1;
  progress.value = 0;
  progress.setAttribute('aria-label', `Progress of ${file.name}`);
  const words = document.createElement('span');
  words.className = 'progress-text';
  item.append(name, progress, words);
  list.prepend(item);
  const show = (state, text) => {
    item.dataset.state = state;
    words.textContent = text;
  };
  show('uploading', 'uploading');
  try {
    const job = await submit(file, pipeline, show);
    item.dataset.id = job.id;
    onChange();
    const final = await watch(job.id, (status) => {
      const { total, rendered, ocred } = status.pages;
      if (total) {
        progress.max = 2 * total;
        progress.value = rendered + ocred;
      }
      const pages = total == null ? '' : `${rendered} of ${total} pages rendered, ${ocred} OCRed: `;
      show(status.state, `${pages}${stage(status)}`);
    });
    progress.max = 1;
    progress.value = 1;
    const link = document.createElement('a');
    link.href = `#job/${encodeURIComponent(job.id)}`;
    link.textContent = `Open ${file.name}`;
    if (final.error) {
      show(final.state, `${final.state}: ${final.error.code}: ${final.error.message}`);
    }
    item.append(' ', link);
  } catch (error) {
    const code = error instanceof ApiError ? error.code : 'network_error';
    show('refused', `refused: ${code}: ${error.message}`);
  }
  onChange();
}
