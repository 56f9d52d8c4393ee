"""The OCR work of the reference service, written the way such a service usually does it.

A document's pages are rendered at 300 DPI in grayscale (PyMuPDF for PDFs, Pillow for
images, which keep their own resolution), each page's orientation is detected and the page
turned upright, then Tesseract recognizes it (tesserocr, English, page segmentation mode 3)
and the words come back with boxes and confidences. With `BASELINE_ORIENTATION=off` in the
environment, orientation detection is skipped: recognition only. The document gets a short extractive
summary. This is the same work pagemill does per page, so that the load benchmark compares
architectures and not different amounts of work. The engine bound of the load benchmark
imports this module too, so that it measures exactly these OCR calls.
"""

import io
import os
import re
import time
from collections import Counter
from dataclasses import dataclass

import pymupdf
import tesserocr
from PIL import Image

RENDER_DPI = 300
LANGUAGES = "eng"
PAGE_SEGMENTATION_MODE = tesserocr.PSM.AUTO
MIN_ORIENTATION_CONFIDENCE = 2.0
ORIENTATION = os.environ.get("BASELINE_ORIENTATION", "auto")
if ORIENTATION not in ("auto", "off"):
    raise SystemExit(f"BASELINE_ORIENTATION must be auto or off, not {ORIENTATION!r}")
# Images without a credible resolution in their metadata are taken to be 300 DPI.
FALLBACK_IMAGE_DPI = 300
CREDIBLE_DPI = range(70, 2401)
SUMMARY_SENTENCES = 5

PDF_MAGIC = b"%PDF-"


@dataclass
class PageImage:
    """8-bit grayscale pixels of one page and their true resolution."""

    pixels: bytes
    width: int
    height: int
    bytes_per_line: int
    dpi: int


class Engines:
    """One orientation engine (none with BASELINE_ORIENTATION=off) and one text engine;
    loading a model takes ~150 ms."""

    def __init__(self):
        self.osd = None
        if ORIENTATION == "auto":
            self.osd = tesserocr.PyTessBaseAPI(
                lang="osd", oem=tesserocr.OEM.TESSERACT_ONLY, psm=tesserocr.PSM.OSD_ONLY
            )
        self.text = tesserocr.PyTessBaseAPI(lang=LANGUAGES, psm=PAGE_SEGMENTATION_MODE)
        for api in (self.osd, self.text):
            if api is not None:
                api.SetVariable("debug_file", "/dev/null")

    def close(self):
        if self.osd is not None:
            self.osd.End()
        self.text.End()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def is_pdf(data: bytes) -> bool:
    return data[:1024].lstrip().startswith(PDF_MAGIC)


def open_document(data: bytes):
    """A PyMuPDF document for PDF bytes, or a Pillow image for anything else."""
    if is_pdf(data):
        return pymupdf.open(stream=data, filetype="pdf")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def page_count(document) -> int:
    if isinstance(document, pymupdf.Document):
        return document.page_count
    return getattr(document, "n_frames", 1)


def load_page(document, index: int) -> PageImage:
    """Renders PDF page `index`, or decodes image frame `index`, to grayscale pixels."""
    if isinstance(document, pymupdf.Document):
        pixmap = document[index].get_pixmap(
            dpi=RENDER_DPI, colorspace=pymupdf.csGRAY, alpha=False
        )
        return PageImage(pixmap.samples, pixmap.width, pixmap.height, pixmap.stride, RENDER_DPI)
    document.seek(index)
    gray = document.convert("L")
    return PageImage(gray.tobytes(), gray.width, gray.height, gray.width, image_dpi(document))


def image_dpi(image) -> int:
    dpi = image.info.get("dpi")
    try:
        value = round(float(dpi[0]))
    except (TypeError, ValueError, IndexError):
        return FALLBACK_IMAGE_DPI
    return value if value in CREDIBLE_DPI else FALLBACK_IMAGE_DPI


def _set_image(api, page: PageImage):
    api.SetImageBytes(page.pixels, page.width, page.height, 1, page.bytes_per_line)
    api.SetSourceResolution(page.dpi)
    # Orientation detection reads the resolution from this variable, not from the image.
    api.SetVariable("user_defined_dpi", str(page.dpi))


def _turn_clockwise(page: PageImage, degrees: int) -> PageImage:
    image = Image.frombytes(
        "L", (page.width, page.height), page.pixels, "raw", "L", page.bytes_per_line
    )
    turned = image.transpose(
        {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
         270: Image.Transpose.ROTATE_90}[degrees]
    )
    return PageImage(turned.tobytes(), turned.width, turned.height, turned.width, page.dpi)


def ocr_page(engines: Engines, page: PageImage, number: int) -> dict:
    """Detects the page's orientation (unless the engines have no orientation engine),
    turns it upright and recognizes it."""
    started = time.monotonic()
    rotation = 0
    if engines.osd is not None:
        _set_image(engines.osd, page)
        orientation = engines.osd.DetectOrientationScript()
        engines.osd.Clear()
        if orientation and orientation["orient_conf"] >= MIN_ORIENTATION_CONFIDENCE:
            rotation = (360 - orientation["orient_deg"] % 360) % 360
    if rotation:
        page = _turn_clockwise(page, rotation)

    api = engines.text
    _set_image(api, page)
    api.Recognize()
    text = api.GetUTF8Text()
    words = words_from_tsv(api.GetTSVText(0))
    confidence = max(api.MeanTextConf(), 0)
    api.Clear()
    return {
        "number": number,
        "text": text,
        "confidence": float(confidence),
        "rotation": rotation,
        "words": words,
        "millis": round((time.monotonic() - started) * 1000),
    }


def words_from_tsv(tsv: str) -> list:
    """Words (TSV level 5 rows) with their confidence and box [left, top, right, bottom]."""
    words = []
    for line in tsv.splitlines():
        cols = line.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        left, top, width, height = (int(c) for c in cols[6:10])
        words.append({
            "text": cols[11].strip(),
            "confidence": max(float(cols[10]), 0.0),
            "bbox": [left, top, left + width, top + height],
        })
    return words


_STOP_WORDS = set(
    "a about above after again against all am an and any are as at be because been before "
    "being below between both but by can could did do does doing down during each few for from "
    "further had has have having he her here hers him his how i if in into is it its itself just "
    "me more most my no nor not now of off on once only or other our out over own same she should "
    "so some such than that the their them then there these they this those through to too under "
    "until up very was we were what when where which while who whom why will with would you your "
    "also may one two new used use".split()
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[^\W\d_]{2,}")


def summarize(text: str, max_sentences: int = SUMMARY_SENTENCES) -> str:
    """Luhn-style extractive summary: the sentences whose content words are most frequent."""
    sentences = []
    for paragraph in re.split(r"\f|\n\s*\n", text):
        joined = " ".join(line.strip() for line in paragraph.splitlines() if line.strip())
        sentences.extend(s for s in _SENTENCE_END.split(joined) if len(_WORD.findall(s)) >= 4)
    counts = Counter(
        w.lower() for s in sentences for w in _WORD.findall(s) if w.lower() not in _STOP_WORDS
    )

    def score(sentence):
        content = [w.lower() for w in _WORD.findall(sentence) if w.lower() not in _STOP_WORDS]
        return sum(counts[w] for w in content) / len(content) if content else 0.0

    best = sorted(range(len(sentences)), key=lambda i: score(sentences[i]), reverse=True)
    return " ".join(sentences[i] for i in sorted(best[:max_sentences]))
