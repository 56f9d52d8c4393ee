// A job's view: its state (live while it runs, with a cancel button), its error, the
// downloads of every output its pipeline writes, the summary and extracted fields, and each
// page's preview with every word's box, coloured by confidence, beside the page's text.
// Pointing at or selecting a word in either place highlights it in both.

import { ApiError, call, download, getJson, imageUrl, stage, watch } from './api.js';

const FINAL = ['done', 'failed', 'cancelled'];
const EXTENSIONS = { txt: 'txt', hocr: 'hocr', alto: 'alto.xml', tsv: 'tsv', pdf: 'pdf' };
const FORMAT_NAMES = {
  txt: 'plain text',
  hocr: 'hOCR',
  alto: 'ALTO XML',
  tsv: 'words with boxes (TSV)',
  pdf: 'searchable PDF',
};
const SVG = 'http://www.w3.org/2000/svg';

/** How sure the engine was of a word: the class that colours its box. */
function certainty(confidence) {
  if (confidence >= 90) return 'high';
  if (confidence >= 70) return 'mid';
  return 'low';
}

function element(tag, properties = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, properties);
  node.append(...children);
  return node;
}

function section(title, ...children) {
  return element('section', { className: 'part' }, element('h3', {}, title), ...children);
}

/** The view of one job, drawn into `root`. */
export class JobView {
  constructor(root) {
    this.root = root;
    this.generation = 0;
    this.previews = [];
  }

  /** Shows job `id`: live while it runs, then in full. */
  async show(id) {
    const generation = ++this.generation;
    this.close();
    this.root.replaceChildren(element('h2', { id: 'job-title', tabIndex: -1 }, 'Job'));
    let status;
    try {
      status = await getJson(`/v1/jobs/${encodeURIComponent(id)}`);
    } catch (error) {
      this.root.append(element('p', { className: 'error', role: 'alert' }, `${error.code}: ${error.message}`));
      return;
    }
    if (generation !== this.generation) return;
    if (!FINAL.includes(status.state)) {
      this.drawRunning(status);
      status = await watch(id, (s) => {
        if (generation === this.generation) this.drawRunning(s);
      });
      if (generation !== this.generation) return;
    }
    await this.drawFinished(status, generation);
  }

  /** Empties the view when another is shown. */
  leave() {
    this.generation += 1;
    this.close();
    this.root.replaceChildren();
  }

  /** Frees the previews of the job shown before. */
  close() {
    for (const url of this.previews) URL.revokeObjectURL(url);
    this.previews = [];
  }

  heading(status) {
    const title = this.root.querySelector('#job-title');
    title.textContent = status.name || status.id;
    return element(
      'p',
      { className: 'meta' },
      `Pipeline ${status.pipeline}, submitted ${new Date(status.submitted_at).toLocaleString()}. `,
      element('span', { className: `state state-${status.state}` }, status.state),
    );
  }

  drawRunning(status) {
    const title = this.root.querySelector('#job-title');
    const { total, rendered, ocred } = status.pages;
    const pages = total == null ? '' : `${rendered} of ${total} pages rendered, ${ocred} OCRed: `;
    const cancel = element('button', { type: 'button', id: 'cancel' }, 'Cancel this job');
    cancel.addEventListener('click', async () => {
      cancel.disabled = true;
      try {
        await call(`/v1/jobs/${encodeURIComponent(status.id)}`, { method: 'DELETE' });
      } catch (error) {
        cancel.disabled = false;
        cancel.after(element('p', { className: 'error', role: 'alert' }, `${error.code}: ${error.message}`));
      }
    });
    this.root.replaceChildren(
      title,
      this.heading(status),
      element('p', { className: 'progress-text', role: 'status' }, `${pages}${stage(status)}`),
      cancel,
    );
  }

  async drawFinished(status, generation) {
    const title = this.root.querySelector('#job-title');
    const parts = [title, this.heading(status)];
    if (status.error) {
      parts.push(
        element(
          'p',
          { className: 'error', role: 'alert', id: 'job-error' },
          element('strong', {}, status.error.code),
          `: ${status.error.message}`,
        ),
      );
    }
    let result = null;
    try {
      result = await getJson(`/v1/jobs/${encodeURIComponent(status.id)}/result`);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      parts.push(element('p', { className: 'error' }, `No result: ${error.code}: ${error.message}`));
    }
    if (generation !== this.generation) return;
    parts.push(await this.downloads(status, result));
    if (result) parts.push(...this.details(result));
    this.root.replaceChildren(...parts);
    if (result) await this.drawPages(status.id, result, generation);
  }

  async downloads(status, result) {
    let formats = [];
    try {
      const { pipelines } = await getJson('/v1/pipelines');
      formats = pipelines.find((p) => p.name === status.pipeline)?.settings?.save?.formats ?? [];
    } catch {
      // The pipeline's formats are unknown: the result alone is offered.
    }
    const list = element('ul', { className: 'downloads' });
    const offer = (label, path, filename, format) => {
      const button = element('button', { type: 'button' }, label);
      button.dataset.format = format;
      button.addEventListener('click', () =>
        download(path, filename).catch((error) => {
          button.after(element('span', { className: 'error', role: 'alert' }, ` ${error.code}: ${error.message}`));
        }),
      );
      list.append(element('li', {}, button));
    };
    const id = encodeURIComponent(status.id);
    if (result) offer('Result record (JSON)', `/v1/jobs/${id}/result`, `${status.id}.json`, 'json');
    if (result && !result.error) {
      for (const format of formats) {
        offer(
          `Download ${FORMAT_NAMES[format] ?? format} (${format})`,
          `/v1/jobs/${id}/outputs/${format}`,
          `${status.id}.${EXTENSIONS[format] ?? format}`,
          format,
        );
      }
    }
    return section('Downloads', list);
  }

  details(result) {
    const parts = [];
    if (result.summary) {
      parts.push(
        section(
          'Summary',
          element('p', { className: 'engine' }, `Written by the ${result.summary.engine} engine.`),
          element('p', { className: 'summary' }, result.summary.text),
        ),
      );
    }
    if (result.extracted) {
      const fields = element('dl', { className: 'fields' });
      for (const [name, value] of Object.entries(result.extracted)) {
        fields.append(
          element('dt', {}, name),
          element('dd', {}, typeof value === 'string' ? value : JSON.stringify(value)),
        );
      }
      parts.push(section('Extracted fields', fields));
    }
    if (result.warnings.length) {
      parts.push(section('Warnings', element('ul', {}, ...result.warnings.map((w) => element('li', {}, w)))));
    }
    return parts;
  }

  async drawPages(id, result, generation) {
    const legend = element(
      'p',
      { className: 'legend' },
      'Word boxes by the engine\u2019s confidence: ',
      element('span', { className: 'swatch high' }, '90 or more'),
      ' ',
      element('span', { className: 'swatch mid' }, '70 to 89'),
      ' ',
      element('span', { className: 'swatch low' }, 'below 70'),
      '. Point at a word, or move through the text with the arrow keys, to see its box.',
    );
    const pages = section('Pages', legend);
    pages.id = 'pages';
    this.root.append(pages);
    for (const page of result.pages) {
      if (generation !== this.generation) return;
      pages.append(await this.page(id, page));
    }
  }

  async page(id, page) {
    const confidence = page.confidence == null ? '' : `, mean confidence ${Math.round(page.confidence)}`;
    const how = { ocr: 'OCR', text_layer: 'the text layer', skipped: 'nothing: skipped' }[page.source] ?? page.source;
    const article = element(
      'article',
      { className: 'page' },
      element('h4', {}, `Page ${page.number}, read by ${how}${confidence}`),
    );
    article.dataset.page = page.number;
    if (page.error) {
      article.append(element('p', { className: 'error' }, element('strong', {}, page.error.code), `: ${page.error.message}`));
    }
    if (!page.words.length) {
      if (page.text) article.append(element('pre', { className: 'page-text plain' }, page.text));
      return article;
    }
    const figure = element('figure', { className: 'scan' });
    if (page.size) {
      figure.style.aspectRatio = `${page.size[0]} / ${page.size[1]}`;
    }
    try {
      const url = await imageUrl(`/v1/jobs/${encodeURIComponent(id)}/pages/${page.number}/preview`);
      this.previews.push(url);
      figure.append(element('img', { src: url, alt: `Page ${page.number} as it was read` }));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      figure.append(element('p', { className: 'no-preview' }, `No preview of this page (${error.code}).`));
    }
    const [width, height] = page.size ?? extent(page.words);
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('aria-hidden', 'true');
    const text = element('div', {
      className: 'page-text',
      tabIndex: 0,
    });
    text.setAttribute('role', 'group');
    text.setAttribute('aria-label', `Text of page ${page.number}; arrow keys move from word to word`);
    const selected = element('p', { className: 'selected-word', role: 'status' });
    const pairs = [];
    let previous = null;
    page.words.forEach((word, index) => {
      const [left, top, right, bottom] = word.bbox;
      const kind = certainty(word.confidence);
      const box = document.createElementNS(SVG, 'rect');
      box.setAttribute('x', left);
      box.setAttribute('y', top);
      box.setAttribute('width', Math.max(1, right - left));
      box.setAttribute('height', Math.max(1, bottom - top));
      box.setAttribute('class', `word-box ${kind}`);
      const tip = document.createElementNS(SVG, 'title');
      tip.textContent = `${word.text} (${Math.round(word.confidence)})`;
      box.append(tip);
      svg.append(box);
      if (previous && left < previous.bbox[0]) text.append(element('br'));
      else if (previous) text.append(' ');
      const span = element('span', { className: `word ${kind}` }, word.text);
      span.dataset.index = index;
      text.append(span);
      pairs.push({ word, box, span });
      previous = word;
    });
    figure.append(svg);
    let current = null;
    const highlight = (index) => {
      if (current != null) {
        pairs[current].box.classList.remove('lit');
        pairs[current].span.classList.remove('lit');
      }
      current = index;
      if (index == null) return;
      const { word, box, span } = pairs[index];
      box.classList.add('lit');
      span.classList.add('lit');
      selected.textContent = `\u201c${word.text}\u201d, confidence ${Math.round(word.confidence)}, box ${word.bbox.join(', ')}`;
    };
    pairs.forEach(({ box, span }, index) => {
      for (const target of [box, span]) {
        target.addEventListener('mouseenter', () => highlight(index));
        target.addEventListener('click', () => highlight(index));
      }
    });
    text.addEventListener('keydown', (event) => {
      const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[event.key];
      if (!step) return;
      event.preventDefault();
      const next = current == null ? 0 : Math.min(pairs.length - 1, Math.max(0, current + step));
      highlight(next);
      pairs[next].span.scrollIntoView({ block: 'nearest' });
    });
    article.append(element('div', { className: 'page-grid' }, figure, element('div', {}, text, selected)));
    return article;
  }
}

/** The smallest frame holding every word box, for a page whose size is not recorded. */
function extent(words) {
  return [
    Math.max(1, ...words.map((w) => w.bbox[2])),
    Math.max(1, ...words.map((w) => w.bbox[3])),
  ];
}
