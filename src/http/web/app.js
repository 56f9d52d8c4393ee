// The page's entry: asks for a key when the API wants one, and switches between the home
// view (submit and jobs) and a job's view (`#job/<id>`) as the address changes.

import { key, setKey, whenUnauthorized } from './api.js';
import { JobView } from './job.js';
import { JobsTable } from './jobs.js';
import { loadPipelines, setUp } from './submit.js';

const $ = (selector) => document.querySelector(selector);

const keyForm = $('#key-form');
const keyInput = $('#key');
const keyMessage = $('#key-message');

const table = new JobsTable({
  body: $('#jobs-table tbody'),
  filter: $('#state-filter'),
  first: $('#jobs-first'),
  next: $('#jobs-next'),
  message: $('#jobs-message'),
});
const jobView = new JobView($('#job'));

/** Asks for a key, saying why. */
function askForKey(message) {
  keyForm.hidden = false;
  keyMessage.textContent = message;
  keyInput.focus();
}

whenUnauthorized(() => {
  if (keyForm.hidden || !keyMessage.textContent) {
    askForKey(key() ? 'This key is not accepted: enter another.' : 'This daemon needs an API key.');
  }
});

keyForm.addEventListener('submit', (event) => {
  event.preventDefault();
  setKey(keyInput.value.trim());
  keyInput.value = '';
  keyMessage.textContent = '';
  keyForm.hidden = true;
  route();
});
$('#key-forget').addEventListener('click', () => {
  setKey('');
  askForKey('The key is forgotten.');
});

setUp({
  form: $('#submit-form'),
  select: $('#pipeline'),
  input: $('#files'),
  zone: $('#drop-zone'),
  list: $('#uploads'),
  onChange: () => table.refresh(),
});

/** Shows the view the address names. */
async function route() {
  const match = location.hash.match(/^#job\/(.+)$/);
  const home = $('#home');
  const job = $('#job');
  if (match) {
    table.stop();
    home.hidden = true;
    job.hidden = false;
    const shown = jobView.show(decodeURIComponent(match[1]));
    $('#job-title')?.focus();
    await shown;
  } else {
    jobView.leave();
    job.hidden = true;
    home.hidden = false;
    try {
      await loadPipelines($('#pipeline'));
    } catch {
      // Said by the key prompt or the jobs table.
    }
    await table.refresh();
  }
}

window.addEventListener('hashchange', route);
route();
