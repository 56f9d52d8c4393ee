// The jobs table: /v1/jobs a page at a time (oldest first, as the API lists them), filtered
// by state, kept current by asking again every few seconds while it is shown.

import { ApiError, getJson } from './api.js';

/** Rows per page: 25, or `?rows=N` in the page's address. */
const PAGE_SIZE = Number(new URLSearchParams(location.search).get('rows')) || 25;
const REFRESH_SECONDS = 3;

function cell(content) {
  const td = document.createElement('td');
  td.append(content);
  return td;
}

function seconds(ms) {
  return ms == null ? '' : `${(ms / 1000).toFixed(1)} s`;
}

function row(job) {
  const link = document.createElement('a');
  link.href = `#job/${encodeURIComponent(job.id)}`;
  link.textContent = job.name || job.id;
  const state = document.createElement('span');
  state.className = `state state-${job.state}`;
  state.textContent = job.error ? `${job.state} (${job.error.code})` : job.state;
  const { total, ocred } = job.pages;
  const tr = document.createElement('tr');
  tr.dataset.id = job.id;
  tr.append(
    cell(link),
    cell(job.pipeline),
    cell(state),
    cell(total == null ? '' : `${ocred} of ${total}`),
    cell(new Date(job.submitted_at).toLocaleString()),
    cell(seconds(job.timings.total_ms)),
  );
  return tr;
}

/** The table's state: the filter, the cursors of the pages shown so far, the timer. */
export class JobsTable {
  constructor({ body, filter, first, next, message }) {
    Object.assign(this, { body, filter, first, next, message });
    this.cursors = [null];
    this.timer = null;
    filter.addEventListener('change', () => this.show(null));
    first.addEventListener('click', () => this.show(null));
    next.addEventListener('click', () => this.show(this.nextCursor));
  }

  /** Shows the page that starts after `cursor` and keeps it current. */
  async show(cursor) {
    this.cursor = cursor;
    await this.refresh();
  }

  async refresh() {
    clearTimeout(this.timer);
    const query = new URLSearchParams({ limit: PAGE_SIZE });
    if (this.filter.value) query.set('state', this.filter.value);
    if (this.cursor) query.set('after', this.cursor);
    try {
      const { jobs, next } = await getJson(`/v1/jobs?${query}`);
      this.body.replaceChildren(...jobs.map(row));
      this.nextCursor = next;
      this.next.disabled = !next;
      this.first.disabled = !this.cursor;
      this.message.textContent = jobs.length ? '' : 'No jobs here yet.';
    } catch (error) {
      this.message.textContent = `The jobs could not be listed: ${error.message}`;
      if (error instanceof ApiError && error.status === 401) return;
    }
    this.timer = setTimeout(() => this.refresh(), REFRESH_SECONDS * 1000);
  }

  stop() {
    clearTimeout(this.timer);
  }
}
