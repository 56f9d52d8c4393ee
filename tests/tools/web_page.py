"""Drives pagemill's web page in headless Chromium (selenium, Debian's chromium and
chromium-driver) as a person would, for tests/web.rs: gives the API key when asked, uploads a
scan and a hostile file through the file input, follows their progress, pages through and
filters the jobs table, opens the scan's view, points at words and their boxes, moves through
them by keyboard, downloads the `txt` output, narrows the window, and forgets the key. With
`--scenario llm` it instead submits one document into each of three pipelines whose
summaries come from an LLM (one with extracted fields, one whose LLM fails so that the
result carries warnings, one whose LLM never answers) and cancels the last from its view.
axe-core runs in every view. A screenshot of each view goes to --screenshots.

It checks what only the page knows (waits, highlights, layout) and writes what it saw as JSON
to --report; tests/web.rs compares that with the API's own answers. Any failure exits
non-zero with the reason.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

FINAL = ("done", "failed", "cancelled", "refused")
WIDE = (1280, 1000)
NARROW = (380, 900)


def browser(downloads: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     f"--window-size={WIDE[0]},{WIDE[1]}"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads),
        "download.prompt_for_download": False,
    })
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


class Page:
    def __init__(self, driver, base, axe_source, screenshots):
        self.driver = driver
        self.base = base
        self.axe_source = axe_source
        self.screenshots = screenshots
        self.report = {"axe": {}, "screenshots": []}

    def wait(self, condition, what, seconds=120):
        try:
            return WebDriverWait(self.driver, seconds, poll_frequency=0.2,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda d: condition())
        except TimeoutException:
            self.shot("timeout")
            raise SystemExit(f"timed out waiting for {what}")

    def css(self, selector):
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def one(self, selector):
        found = self.css(selector)
        return found[0] if found else None

    def visible(self, selector):
        element = self.one(selector)
        return element is not None and element.is_displayed()

    def shot(self, view):
        path = self.screenshots / f"{view}.png"
        # The whole page, not only the window: the document's full height.
        height = self.driver.execute_script(
            "return Math.max(document.body.scrollHeight, window.innerHeight)")
        width = self.driver.get_window_size()["width"]
        self.driver.set_window_size(width, min(height + 140, 6000))
        self.driver.save_screenshot(str(path))
        self.report["screenshots"].append(str(path))
        return path

    def axe(self, view):
        """Runs axe-core in the page; records the violations per impact and their rules."""
        self.driver.execute_script(self.axe_source)
        violations = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            "  .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact,"
            "                                          nodes: v.nodes.length}))))"
            "  .catch(e => done({error: String(e)}));")
        if isinstance(violations, dict):
            raise SystemExit(f"axe-core failed in {view}: {violations['error']}")
        counts = {"minor": 0, "moderate": 0, "serious": 0, "critical": 0}
        for v in violations:
            counts[v["impact"]] += 1
        self.report["axe"][view] = {"counts": counts, "violations": violations}
        print(f"axe-core in {view}: {counts} {violations}", file=sys.stderr)


def upload(page, *paths):
    """Sends files through the file input at once; returns each one's upload line once it is
    final (by file name), with every text the line showed on the way."""
    page.driver.execute_script(
        "window.__seen = window.__seen || {};"
        "const list = document.querySelector('#uploads');"
        "if (!window.__watching) {"
        "  window.__watching = new MutationObserver(() => {"
        "    for (const li of list.children) {"
        "      const name = li.querySelector('.name').textContent;"
        "      const text = li.dataset.state + ' | ' + li.querySelector('.progress-text').textContent;"
        "      const seen = (window.__seen[name] = window.__seen[name] || []);"
        "      if (seen[seen.length - 1] !== text) seen.push(text);"
        "    }"
        "  });"
        "  window.__watching.observe(list, {subtree: true, childList: true, characterData: true,"
        "                                   attributes: true});"
        "}")
    page.one("#files").send_keys("\n".join(str(p) for p in paths))

    def final_line(name):
        for li in page.css("#uploads li"):
            if li.find_element(By.CSS_SELECTOR, ".name").text != name:
                continue
            state = li.get_attribute("data-state")
            if state == "refused" or (state in FINAL and li.find_elements(By.CSS_SELECTOR, "a")):
                return li
        return None

    lines = {}
    for path in paths:
        line = page.wait(lambda: final_line(path.name), f"the upload of {path.name} to end",
                         seconds=300)
        lines[path.name] = {
            "id": line.get_attribute("data-id"),
            "state": line.get_attribute("data-state"),
            "text": line.text,
            "seen": page.driver.execute_script("return window.__seen[arguments[0]] || []",
                                               path.name),
        }
    return lines


def submit_to(page, pipeline, path):
    """Uploads `path` into `pipeline` from the home page; returns its job id once the upload
    line has one."""
    page.driver.get(f"{page.base}/")
    page.wait(lambda: page.css("#pipeline option"), "the pipelines")
    Select(page.one("#pipeline")).select_by_value(pipeline)
    page.one("#files").send_keys(str(path))

    def job_id():
        for li in page.css("#uploads li"):
            if li.get_attribute("data-id"):
                return li.get_attribute("data-id")
        return None
    return page.wait(job_id, f"a job id for the upload into {pipeline}")


def open_finished(page, job_id):
    """Opens a job's view and waits for its final state."""
    page.driver.get(f"{page.base}/#job/{job_id}")
    page.wait(lambda: page.one("#job .state") and page.one("#job .state").text in FINAL,
              f"job {job_id} to end")


def llm_views(page, args):
    """Extracted fields and warnings in a finished job's view; cancel in a running one's."""
    report = page.report
    driver = page.driver
    driver.get(f"{args.base}/")
    page.wait(lambda: page.visible("#key-form"), "the key prompt")
    page.one("#key").send_keys(args.key + Keys.ENTER)
    page.wait(lambda: page.css("#pipeline option"), "the pipelines")

    fields_id = submit_to(page, args.fields_pipeline, args.scan)
    open_finished(page, fields_id)
    page.wait(lambda: page.css("#job .fields dt"), "the extracted fields")
    report["fields_id"] = fields_id
    report["fields"] = {dt.text: dd.text for dt, dd in
                        zip(page.css("#job .fields dt"), page.css("#job .fields dd"))}
    page.axe("job view with extracted fields")
    page.shot("job-view-fields")

    warned_id = submit_to(page, args.warned_pipeline, args.scan)
    open_finished(page, warned_id)
    report["warned_id"] = warned_id
    report["warnings"] = driver.execute_script(
        "const s = [...document.querySelectorAll('#job section.part')]"
        "  .find(s => s.querySelector('h3').textContent === 'Warnings');"
        "return s ? [...s.querySelectorAll('li')].map(li => li.textContent) : []")
    report["warned_engine"] = page.one("#job .engine").text
    page.axe("job view with warnings")
    page.shot("job-view-warnings")

    # The held job's view while it runs: its progress and a cancel button that works.
    held_id = submit_to(page, args.held_pipeline, args.scan)
    driver.get(f"{args.base}/#job/{held_id}")
    page.wait(lambda: page.visible("#cancel") and "summar" in page.one(
        "#job .progress-text").text, "the held job running in summarize, with Cancel")
    report["held_id"] = held_id
    report["held_progress"] = page.one("#job .progress-text").text
    page.axe("running job view")
    page.shot("running-job-view")
    page.one("#cancel").click()
    page.wait(lambda: page.one("#job .state") and page.one(
        "#job .state").text == "cancelled", "the cancelled job's view")
    report["held_state"] = page.one("#job .state").text
    report["held_error"] = page.one("#job-error").text if page.one("#job-error") else None
    report["cancel_gone"] = not page.css("#cancel")
    page.shot("cancelled-job-view")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", choices=["person", "llm"], default="person")
    parser.add_argument("--base", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--scan", required=True, type=Path)
    parser.add_argument("--hostile", type=Path)
    parser.add_argument("--fields-pipeline")
    parser.add_argument("--warned-pipeline")
    parser.add_argument("--held-pipeline")
    parser.add_argument("--axe", required=True, type=Path)
    parser.add_argument("--screenshots", required=True, type=Path)
    parser.add_argument("--downloads", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path)
    args = parser.parse_args()
    # Chromium takes only canonical paths for a file input.
    args.scan = args.scan.resolve()
    if args.hostile:
        args.hostile = args.hostile.resolve()
    args.screenshots.mkdir(parents=True, exist_ok=True)
    args.downloads.mkdir(parents=True, exist_ok=True)

    driver = browser(args.downloads)
    page = Page(driver, args.base, args.axe.read_text(), args.screenshots)
    report = page.report
    if args.scenario == "llm":
        try:
            llm_views(page, args)
        finally:
            args.report.write_text(json.dumps(report, indent=2))
            driver.quit()
        return
    try:
        # 6. Keys are in force: the page asks for one, and keeps it for the session only.
        # Rows of one job per page, so that two jobs make two pages of the table.
        driver.get(f"{args.base}/?rows=1")
        page.wait(lambda: page.visible("#key-form") and page.one("#key-message").text,
                  "the key prompt")
        report["key_prompt"] = page.one("#key-message").text
        page.axe("key prompt")
        page.shot("key-prompt")
        page.one("#key").send_keys(args.key + Keys.ENTER)
        page.wait(lambda: page.css("#pipeline option"), "the pipelines")
        report["pipelines"] = [o.text for o in page.css("#pipeline option")]
        report["key_in_session"] = driver.execute_script(
            "return sessionStorage.getItem('pagemill.key')") == args.key
        report["key_in_local_storage"] = driver.execute_script(
            "return JSON.stringify(localStorage).includes(arguments[0])", args.key)

        # 2. Submit: a real scan, then a hostile file, through the file input.
        report["scan_upload"] = upload(page, args.scan)[args.scan.name]
        report["hostile_upload"] = upload(page, args.hostile)[args.hostile.name]

        # 3. Jobs: the table caught up by itself; one row a page, the next page by `after`.
        scan_id = report["scan_upload"]["id"]
        hostile_id = report["hostile_upload"]["id"]

        def rows():
            return driver.execute_script(
                "return [...document.querySelectorAll('#jobs-table tbody tr')]"
                "  .map(r => [r.dataset.id, r.cells[2].textContent])")

        page.wait(lambda: any(state.startswith("done") for _, state in rows()),
                  "the jobs table to show the scan done")
        report["jobs_pages"] = [rows()]
        while page.one("#jobs-next").is_enabled() and len(report["jobs_pages"]) < 5:
            shown = rows()
            page.one("#jobs-next").click()
            page.wait(lambda: rows() != shown, "the next page of jobs")
            report["jobs_pages"].append(rows())
        page.one("#jobs-first").click()
        Select(page.one("#state-filter")).select_by_value("failed")
        page.wait(lambda: rows() and all(state.startswith("failed") for _, state in rows()),
                  "the failed jobs")
        report["failed_filter"] = rows()
        Select(page.one("#state-filter")).select_by_value("")
        page.axe("home")
        page.shot("home")

        # 4. The scan's view: its page image, a box for every word, the text beside it.
        driver.set_window_size(*WIDE)
        driver.get(f"{args.base}/#job/{scan_id}")
        page.wait(lambda: page.css("#pages .page img") and driver.execute_script(
            "const i = document.querySelector('#pages .page img');"
            "return i.complete && i.naturalWidth > 0"), "the scan's view with its preview")
        page.wait(lambda: page.css("#pages rect.word-box"), "the word boxes")
        report["word_boxes"] = len(page.css("#pages rect.word-box"))
        report["word_spans"] = len(page.css("#pages .page-text .word"))
        report["page_text"] = "\n".join(t.text for t in page.css("#pages .page-text"))
        report["downloads_offered"] = [b.get_attribute("data-format")
                                       for b in page.css(".downloads button")]
        report["summary_engine"] = (page.one(".engine").text if page.one(".engine") else None)
        # The preview and the boxes cover the same area, so boxes land on their words.
        report["overlay_matches_image"] = driver.execute_script(
            "const i = document.querySelector('#pages .page img').getBoundingClientRect();"
            "const s = document.querySelector('#pages .page svg').getBoundingClientRect();"
            "return Math.abs(i.width - s.width) < 2 && Math.abs(i.height - s.height) < 2")

        # Pointing at a word lights its box; pointing at a box lights its word.
        spans = page.css("#pages .page-text .word")
        boxes = page.css("#pages rect.word-box")
        middle = len(spans) // 2
        ActionChains(driver).move_to_element(spans[middle]).perform()
        report["word_lights_box"] = "lit" in (boxes[middle].get_attribute("class") or "")
        ActionChains(driver).move_to_element(boxes[0]).perform()
        report["box_lights_word"] = "lit" in (spans[0].get_attribute("class") or "")
        # By keyboard: tab to the text, arrow keys move through the words.
        text = page.one("#pages .page-text")
        driver.execute_script("arguments[0].focus()", text)
        ActionChains(driver).send_keys(Keys.ARROW_RIGHT).perform()
        ActionChains(driver).send_keys(Keys.ARROW_RIGHT).perform()
        lit = [i for i, b in enumerate(page.css("#pages rect.word-box"))
               if "lit" in (b.get_attribute("class") or "")]
        report["keyboard_lit"] = lit
        report["keyboard_status"] = page.one(".selected-word").text
        # Every control can be reached with Tab.
        reached = set()
        driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
        body = page.one("body")
        body.send_keys(Keys.TAB)
        for _ in range(60):
            reached.add(driver.execute_script(
                "const e = document.activeElement;"
                "return e.tagName + (e.dataset.format ? ':' + e.dataset.format : '')"
                "  + (e.className ? '.' + e.className : '')"))
            ActionChains(driver).send_keys(Keys.TAB).perform()
        report["tab_reached"] = sorted(reached)
        page.axe("job view")
        page.shot("job-view")

        # The txt download, through the page (fetched with the key).
        for existing in args.downloads.iterdir():
            existing.unlink()
        driver.set_window_size(*WIDE)
        page.one(".downloads button[data-format='txt']").click()

        def downloaded():
            # The finished download, not Chromium's temporary file for it.
            files = [f for f in args.downloads.iterdir()
                     if f.suffix == ".txt" and not f.name.startswith(".")]
            return files[0] if files else None
        report["downloaded_txt"] = str(page.wait(downloaded, "the txt download", seconds=30))

        # 7. A narrow window: one column, nothing wider than the window.
        driver.set_window_size(*NARROW)
        time.sleep(0.3)
        report["narrow_overflow_px"] = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        page.axe("job view, narrow")
        page.shot("job-view-narrow")
        driver.set_window_size(*WIDE)

        # The hostile file's view: its error code.
        if hostile_id:
            driver.get(f"{args.base}/#job/{hostile_id}")
            page.wait(lambda: page.visible("#job-error"), "the hostile file's error")
            report["hostile_view_error"] = page.one("#job-error").text
            page.axe("failed job view")
            page.shot("failed-job-view")

        # 2. Two files at once into a pipeline with room for one job: the second waits out a
        # 429, saying when it tries again, then goes through.
        copy = args.downloads.parent / f"copy-of-{args.scan.name}"
        shutil.copyfile(args.scan, copy)
        driver.get(f"{args.base}/")
        page.wait(lambda: page.css("#pipeline option"), "the pipelines")
        report["pair_uploads"] = upload(page, args.scan, copy)

        # 6. A key that is no longer good: the page asks again.
        driver.execute_script("sessionStorage.setItem('pagemill.key', 'pm_not-a-key')")
        driver.get(f"{args.base}/")
        page.wait(lambda: page.visible("#key-form") and page.one("#key-message").text,
                  "the key prompt after a 401")
        report["reprompt"] = page.one("#key-message").text
    finally:
        args.report.write_text(json.dumps(report, indent=2))
        driver.quit()


if __name__ == "__main__":
    main()
