// Reads a recognized page out of Tesseract in one left-to-right pass: its text (as
// TessBaseAPI::GetUTF8Text gives it) and its words with boxes and confidences (as the word rows
// of TessBaseAPI::GetTSVText give them).
//
// Tesseract's own outputs walk the page with a ResultIterator, which puts the words of each
// line in reading order for right-to-left scripts by restarting the line from the top of the
// page at every word: on a dense page of about a thousand words, GetUTF8Text and GetTSVText
// take 0.4-1.2 s together, a quarter of the page's recognition time. When no word on the page
// is right-to-left (or mixed), reading order is the left-to-right order and that work changes
// nothing, so this walk uses the plain left-to-right iterator instead, once, in linear time.
// A page with a right-to-left word is left to Tesseract's outputs (the function returns 0).

#include <tesseract/baseapi.h>
#include <tesseract/ltrresultiterator.h>
#include <tesseract/resultiterator.h>

#include <memory>
#include <string>

using tesseract::LTRResultIterator;
using tesseract::PageIteratorLevel;

namespace {

// Text output leaves out blocks that are pictures or rules (as GetUTF8Text does).
bool block_holds_text(tesseract::PolyBlockType type) {
  switch (type) {
    case tesseract::PT_FLOWING_IMAGE:
    case tesseract::PT_HEADING_IMAGE:
    case tesseract::PT_PULLOUT_IMAGE:
    case tesseract::PT_HORZ_LINE:
    case tesseract::PT_VERT_LINE:
      return false;
    default:
      return true;
  }
}

// Whether the iterator stands at the start of `level`, as ResultIterator::IsAtBeginningOf
// answers it: false past the end, true on a position without words (a picture block).
bool at_beginning_of(const LTRResultIterator &it, PageIteratorLevel level) {
  if (it.Empty(tesseract::RIL_BLOCK)) {
    return false;
  }
  return it.Empty(tesseract::RIL_WORD) || it.IsAtBeginningOf(level);
}

}  // namespace

extern "C" {

typedef void (*pagemill_word_fn)(void *context, int left, int top, int right, int bottom,
                                 float confidence, const char *text);
typedef void (*pagemill_text_fn)(void *context, const char *text, size_t length);

// Calls `on_word` for every word in reading order and `on_text` once with the page's text.
// Returns 1 when done, 0 when the page has a right-to-left or mixed word (nothing is called)
// and -1 when there is no recognized page.
int pagemill_read_page(tesseract::TessBaseAPI *api, void *context, pagemill_word_fn on_word,
                       pagemill_text_fn on_text) {
  std::unique_ptr<tesseract::ResultIterator> result(api->GetIterator());
  if (!result) {
    return -1;
  }
  const LTRResultIterator start(*result);

  LTRResultIterator scan(start);
  for (; !scan.Empty(tesseract::RIL_BLOCK); scan.Next(tesseract::RIL_WORD)) {
    if (scan.Empty(tesseract::RIL_WORD)) {
      continue;
    }
    auto direction = scan.WordDirection();
    if (direction == tesseract::DIR_RIGHT_TO_LEFT || direction == tesseract::DIR_MIX) {
      return 0;
    }
  }

  std::string text;
  bool line_has_words = false;
  LTRResultIterator it(start);
  while (!it.Empty(tesseract::RIL_BLOCK)) {
    if (it.Empty(tesseract::RIL_WORD)) {
      it.Next(tesseract::RIL_WORD);
      continue;
    }
    std::unique_ptr<const char[]> word(it.GetUTF8Text(tesseract::RIL_WORD));
    int left = 0, top = 0, right = 0, bottom = 0;
    it.BoundingBox(tesseract::RIL_WORD, &left, &top, &right, &bottom);
    const char *word_text = word ? word.get() : "";
    on_word(context, left, top, right, bottom, it.Confidence(tesseract::RIL_WORD), word_text);

    const bool in_text = block_holds_text(it.BlockType());
    if (in_text) {
      if (line_has_words) {
        text += ' ';
      }
      text += word_text;
      line_has_words = true;
    }
    it.Next(tesseract::RIL_WORD);
    const bool at_end = it.Empty(tesseract::RIL_BLOCK);
    if (in_text && (at_end || at_beginning_of(it, tesseract::RIL_TEXTLINE))) {
      text += '\n';
      if (at_beginning_of(it, tesseract::RIL_PARA)) {
        text += '\n';
      }
      line_has_words = false;
    }
  }
  on_text(context, text.data(), text.size());
  return 1;
}

}  // extern "C"
