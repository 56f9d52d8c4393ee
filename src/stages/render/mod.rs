//! Render stage: turns each page of a document into OCR input, lazily.
//!
//! Page *i* is rendered only after a credit on the edge into OCR is free, so page images in
//! memory are bounded by that edge, never by document size. Born-digital PDF pages carry a
//! text layer: with `text_layer: auto` it is taken and the page skips rendering and OCR.
//! Within a window of pages, a PDF's pages are rendered heaviest first by their estimated
//! OCR work ([`cost`]), so that a document does not end with one long page running alone.
//! The pure work is [`prepare_page`]; it runs on the shared CPU pool.
//!
//! Documents render side by side: the actor announces each document to the assembler, then
//! hands it to a task of its own, which holds the document's credit on the edge into this
//! stage (`edges.render_documents`) until its last page is passed on. The edge into OCR hands
//! out its credits in the order they were asked for, so documents rendering at the same
//! time take turns page by page: a one-page job submitted behind a 200-page scan has its
//! page in OCR after a page or two of the scan, not after all of it. A panic in a task
//! fails that job (an internal error); it never loses it.

pub mod cost;
pub mod image;
pub mod lept;
pub mod pdf;
pub mod preprocess;
pub mod text_size;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::config::{OrientationMode, Pipeline, RenderConfig, TextLayerMode};
use crate::limits::MAX_RENDER_SIDE_PX;
use crate::model::document::{Content, Document};
use crate::model::error::JobError;
use crate::model::page::{PageImage, PagePixels, PrintStands};
use crate::model::result::SkipReason;
use crate::pipeline::context::StageContext;
use crate::pipeline::edge::{Credit, Downstream};
use crate::pipeline::events::{
    Discard, Discarded, Failed, PageRendered, Passed, Received, Rendered,
};
use crate::pipeline::job::JobInfo;
use crate::pipeline::messages::{
    AssembleMsg, Expectation, FinishedPage, OcrMsg, OcrWork, PageOutcome, RenderMsg, RenderWork,
};
use crate::pipeline::stage::Stage;
use crate::runtime::pool::Lane;

/// What one page turned into.
#[derive(Debug)]
pub enum PageInput {
    /// Pixels for OCR.
    Image(PageImage),
    /// The PDF's own text; `invisible` when it is an OCR layer added by another tool.
    TextLayer { text: String, invisible: bool },
    /// Nothing to recognize: no letter-sized ink on the page (a blank or separator sheet), or
    /// a picture without text where the pipeline skips those.
    Skipped(SkipReason),
}

/// Prepares page `index` (0-based): its text layer if the pipeline takes it, else its pixels,
/// after checking the page's pixel count against the limit *before* any pixel is allocated;
/// then measures its print ([`text_size`]) and, unless it has none to read, cleans it up and
/// scales it by the pipeline's preprocessing steps.
pub fn prepare_page(
    doc: &Document,
    index: u32,
    pipeline: &Pipeline,
) -> Result<PageInput, JobError> {
    let (pixels, dpi) = match page_pixels(doc, index, pipeline)? {
        Pixels::TextLayer(input) => return Ok(input),
        Pixels::Image(pixels, dpi) => (pixels, dpi),
    };
    // Which way up the print stands matters only where orientation detection waits for a
    // reason to run.
    let judge_orientation = pipeline.ocr.orientation == OrientationMode::Auto;
    let text = text_size::measure(&pixels, judge_orientation)
        .map_err(|e| JobError::PreprocessFailed(e.to_string()))?;
    if pipeline.ocr.skip_pages_without_text && text.letters == 0 {
        return Ok(PageInput::Skipped(SkipReason::NoText));
    }
    if pipeline.ocr.skip_pictures_without_text && text.picture_without_text() {
        return Ok(PageInput::Skipped(SkipReason::PictureWithoutText));
    }
    let (pixels, done) = preprocess::preprocess(
        pixels,
        dpi,
        &text,
        &pipeline.preprocess,
        pipeline.limits.max_page_pixels,
    )?;
    let mut image = PageImage::new(pixels, done.dpi);
    image.deskew_degrees = done.deskew_degrees;
    image.scale = done.scale;
    image.print_stands = match (text.sideways, text.upright) {
        (true, _) | (false, Some(false)) => PrintStands::Turned,
        (false, Some(true)) => PrintStands::Upright,
        (false, None) => PrintStands::NotKnown,
    };
    Ok(PageInput::Image(image))
}

/// A page's text layer, or its raw pixels and resolution.
enum Pixels {
    TextLayer(PageInput),
    Image(PagePixels, u32),
}

fn page_pixels(doc: &Document, index: u32, pipeline: &Pipeline) -> Result<Pixels, JobError> {
    let (render, limits) = (&pipeline.render, &pipeline.limits);
    match &doc.content {
        Content::Pdf(pdf) => {
            if let Some(layer) = taken_text_layer(pdf, index, render) {
                return Ok(Pixels::TextLayer(PageInput::TextLayer {
                    text: layer.text,
                    invisible: layer.invisible,
                }));
            }
            let (width, height) = pdf::pdf_page_pixel_size(pdf, index, render.dpi);
            check_page_pixels(index, width, height, limits.max_page_pixels)?;
            let mut gray = pdf::render_pdf_page(pdf, index, render.dpi);
            if pipeline.preprocess.smooth_bilevel
                && pdf::drawn_from_bilevel_scan(pdf, index, render.dpi)
            {
                preprocess::restore_black_and_white(&mut gray);
            }
            Ok(Pixels::Image(PagePixels::Gray(gray), render.dpi))
        }
        Content::Image { bytes, pages } => {
            let page = &pages[index as usize];
            check_page_pixels(
                index,
                page.width as u64,
                page.height as u64,
                limits.max_page_pixels,
            )?;
            let reader = crate::model::image_pages::PageReader::new(bytes, page.directory);
            let pixels =
                image::decode_page(reader.clone(), doc.media_type, limits.max_page_pixels)?;
            Ok(Pixels::Image(
                pixels,
                image::image_dpi(bytes, reader, doc.media_type),
            ))
        }
    }
}

/// Page `index`'s text layer (0-based), when the pipeline takes it instead of OCR:
/// `text_layer: auto` and at least `min_text_layer_chars` non-blank characters.
pub fn taken_text_layer(
    pdf: &hayro::hayro_syntax::Pdf,
    index: u32,
    render: &RenderConfig,
) -> Option<pdf::TextLayer> {
    if render.text_layer != TextLayerMode::Auto {
        return None;
    }
    let layer = pdf::extract_text_layer(pdf, index);
    let chars = layer.text.chars().filter(|c| !c.is_whitespace()).count();
    (chars >= render.min_text_layer_chars).then_some(layer)
}

/// The pages a resumed job finished before, from the journal.
async fn restored_pages(
    ctx: &StageContext,
    job_id: &str,
) -> std::collections::HashMap<u32, crate::model::result::PageRecord> {
    let Some(journal) = ctx.store.clone() else {
        return Default::default();
    };
    // Checkpoints hold the page record, not its hOCR, ALTO or image: a pipeline that writes
    // those does its pages again rather than leave them empty in the files.
    let ocr = &ctx.pipeline.ocr;
    if ocr.keep_hocr || ocr.keep_alto || ocr.keep_page_image {
        return Default::default();
    }
    match journal.checkpoints(job_id).await {
        Ok(pages) => pages
            .into_iter()
            .filter_map(|(n, json)| serde_json::from_str(&json).ok().map(|r| (n, r)))
            .collect(),
        _ => Default::default(),
    }
}

/// Refuses a page larger than `max_pixels` or wider or taller than the renderer can draw,
/// before a single pixel of it is allocated.
fn check_page_pixels(index: u32, width: u64, height: u64, max_pixels: u64) -> Result<(), JobError> {
    if width.saturating_mul(height) > max_pixels
        || width > MAX_RENDER_SIDE_PX
        || height > MAX_RENDER_SIDE_PX
    {
        return Err(JobError::TooManyPixels {
            page: index + 1,
            width,
            height,
            limit: max_pixels,
        });
    }
    Ok(())
}

pub struct RenderStage;

/// What every document's rendering needs; each document's task holds a copy.
#[derive(Clone)]
pub struct RenderState {
    ctx: StageContext,
    ocr: Downstream<OcrMsg>,
    assemble: Downstream<AssembleMsg>,
}

impl Actor for RenderStage {
    type Msg = RenderMsg;
    type State = RenderState;
    type Arguments = (StageContext, Downstream<OcrMsg>, Downstream<AssembleMsg>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (ctx, ocr, assemble): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(RenderState { ctx, ocr, assemble })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let RenderMsg::Document(work, credit) = msg;
        let ctx = &state.ctx;
        let RenderWork {
            info,
            source,
            document,
        } = work;
        ctx.recovery.handling(Stage::Render, Some(&info.id));
        if info.is_superseded() {
            Discarded {
                job_id: &info.id,
                stage: Stage::Render,
                items: 1,
                why: Discard::Superseded,
            }
            .emit(ctx);
            return Ok(());
        }
        let (document, error) = match document {
            Ok(d) => (Some(Arc::new(d)), None),
            Err(e) => (None, Some(e)),
        };
        let page_count = document.as_ref().map_or(0, |d| d.page_count);
        // Render counts pages: a document that could not be opened brings none.
        Received {
            stage: Stage::Render,
            items: info.pages_to_read(page_count) as u64,
        }
        .emit(ctx);
        // The assembler learns what to expect before any page of this job can reach it.
        state.assemble.send_now(AssembleMsg::Expect(Expectation {
            info: info.clone(),
            source,
            page_count,
            error,
        }));
        let Some(document) = document else {
            return Ok(());
        };
        // The document renders in a task of its own, so that the next document starts
        // rendering at once, and the pages of both take turns for room in OCR.
        tokio::spawn(render_document(state.clone(), info, document, credit));
        Ok(())
    }
}

/// Renders every page of a document, holding `credit` (its place on the edge into this
/// stage) until the last page is passed on. A panic ends the job with an internal error
/// instead of losing it: the page it happened on counts as an error, the pages not started
/// yet as discarded.
async fn render_document(
    state: RenderState,
    info: Arc<JobInfo>,
    document: Arc<Document>,
    credit: Credit,
) {
    let mut not_rendered = info.pages_to_read(document.page_count);
    let pages = render_pages(&state, &info, &document, &mut not_rendered);
    if let Err(panic) = AssertUnwindSafe(pages).catch_unwind().await {
        let ctx = &state.ctx;
        let error = JobError::Internal(format!(
            "rendering the document panicked: {}",
            crate::runtime::pool::panic_message(&panic)
        ));
        Failed {
            stage: Stage::Render,
            error_type: error.code(),
        }
        .emit(ctx);
        Discarded {
            job_id: &info.id,
            stage: Stage::Render,
            items: not_rendered as u64,
            why: Discard::JobFailed,
        }
        .emit(ctx);
        info.span(Stage::Render)
            .in_scope(|| tracing::error!(error = %error, "job failed in render"));
        state
            .assemble
            .send_now(AssembleMsg::Abandon(info.clone(), error));
    }
    drop(credit);
}

/// The pages of one document, in order: restored pages straight to the assembler, then the
/// others rendered heaviest first within each window, each only once a credit on the edge
/// into OCR is held. `not_rendered` counts the pages not started yet.
async fn render_pages(
    state: &RenderState,
    info: &Arc<JobInfo>,
    document: &Arc<Document>,
    not_rendered: &mut u32,
) {
    let ctx = &state.ctx;
    let mut restored = restored_pages(ctx, &info.id).await;
    if !restored.is_empty() {
        info.span(Stage::Render).in_scope(|| {
            tracing::info!(
                pages = restored.len(),
                "resuming: checkpointed pages are not done again"
            )
        });
    }
    let mut pending = Vec::new();
    for index in 0..document.page_count {
        if !info.reads_page(index + 1) {
            continue;
        }
        if let Some(record) = restored.remove(&(index + 1)) {
            Passed {
                stage: Stage::Render,
                items: 1,
            }
            .emit(ctx);
            *not_rendered -= 1;
            let page = FinishedPage {
                info: info.clone(),
                number: index + 1,
                outcome: PageOutcome::Restored(Box::new(record)),
                render_ms: 0,
            };
            state
                .assemble
                .send_with(|c| AssembleMsg::Page(page, c))
                .await;
            continue;
        }
        pending.push(index);
    }
    // Pages of this document given room in OCR so far: the fewer, the sooner the next.
    let mut pages_started = 0;
    for window in pending.chunks(PLAN_WINDOW) {
        for page in plan_order(ctx, document, window).await {
            // Lazy rendering: wait for room in OCR before producing this page's pixels. Room
            // goes first to the document with the fewest pages started, so a small job that
            // arrives behind a big one gets the next place.
            let credit = state.ocr.edge.acquire_ranked(pages_started).await;
            pages_started += 1;
            if info.is_superseded() {
                // A stage crashed and the job runs again from the start: this attempt stops.
                Discarded {
                    job_id: &info.id,
                    stage: Stage::Render,
                    items: *not_rendered as u64,
                    why: Discard::Superseded,
                }
                .emit(ctx);
                return;
            }
            if info.is_cancelled() {
                // Pages not rendered yet are never rendered; the job ends here.
                let pages = *not_rendered;
                Discarded {
                    job_id: &info.id,
                    stage: Stage::Render,
                    items: pages as u64,
                    why: Discard::Cancelled,
                }
                .emit(ctx);
                info.span(Stage::Render)
                    .in_scope(|| tracing::info!(pages_not_rendered = pages, "job cancelled"));
                state
                    .assemble
                    .send_now(AssembleMsg::Abandon(info.clone(), JobError::Cancelled));
                return;
            }
            *not_rendered -= 1;
            render_page(state, info, document, page, credit).await;
        }
    }
}

/// Prepares one planned page on the pool (or takes the text layer planning already read)
/// and passes it on: pixels to OCR with their credit, anything else to the assembler.
async fn render_page(
    state: &RenderState,
    info: &Arc<JobInfo>,
    document: &Arc<Document>,
    page: PlannedPage,
    credit: Credit,
) {
    let ctx = &state.ctx;
    let index = page.index;
    let max_job_time = ctx.pipeline.limits.max_job_time;
    let (prepared, seconds) = if let Some(input) = page.text_layer {
        (Ok(input), 0.0)
    } else if info.submitted.elapsed() >= max_job_time {
        // Out of time: the remaining pages fail without being rendered.
        let limit_ms = max_job_time.as_millis() as u64;
        (Err(JobError::JobTimeout { limit_ms }), 0.0)
    } else {
        let (doc, pipeline, span, name) = (
            document.clone(),
            ctx.pipeline.clone(),
            info.span(Stage::Render).clone(),
            info.document.clone(),
        );
        ctx.pool
            .run_in(Lane::Short, move || {
                let _in_span = span.enter();
                crate::pipeline::faults::inject(Stage::Render, &name, index + 1);
                let started = Instant::now();
                let prepared = prepare_page(&doc, index, &pipeline);
                (prepared, started.elapsed().as_secs_f64())
            })
            .await
            .unwrap_or_else(|e| (Err(e), 0.0))
    };
    let render_ms = (seconds * 1000.0) as u64;
    let number = index + 1;
    PageRendered {
        info,
        number,
        seconds,
        rendered: match &prepared {
            Ok(PageInput::Image(_)) => Rendered::ForOcr,
            Ok(PageInput::TextLayer { .. }) => Rendered::TextLayer,
            Ok(PageInput::Skipped(_)) => Rendered::Skipped,
            Err(e) => Rendered::Failed(e),
        },
    }
    .emit(ctx);
    let outcome = match prepared {
        Ok(PageInput::Image(image)) => {
            let work = OcrWork {
                info: info.clone(),
                number,
                image,
                render_ms,
            };
            state.ocr.send_now(OcrMsg::Page(work, credit));
            return;
        }
        Ok(PageInput::TextLayer { text, invisible }) => PageOutcome::TextLayer { text, invisible },
        Ok(PageInput::Skipped(why)) => PageOutcome::Skipped(why),
        Err(e) => PageOutcome::Failed(e),
    };
    drop(credit);
    let page = FinishedPage {
        info: info.clone(),
        number,
        outcome,
        render_ms,
    };
    state
        .assemble
        .send_with(|c| AssembleMsg::Page(page, c))
        .await;
}

/// Pages of one document whose rendering order is planned at once. Planning previews each
/// (~7 ms for a scanned page), so a window delays the first render of a document by a few
/// tenths of a second at most, and ends the document with its lightest pages.
const PLAN_WINDOW: usize = 32;

/// A page in the order it is to be rendered.
struct PlannedPage {
    /// 0-based.
    index: u32,
    /// The page's text layer, when planning found it is taken instead of OCR.
    text_layer: Option<PageInput>,
}

/// The order to render `pages` (0-based, ascending) of a document in: pages whose text layer
/// is taken first (they need no OCR; the layer planning read is kept, not read again), then
/// the heaviest estimated OCR work first (see [`cost`]), so that no long page is left to run
/// alone at the end. Image documents, and windows no longer than the pool has threads, keep
/// document order, as does a window whose previews fail (the real rendering will report why).
async fn plan_order(
    ctx: &StageContext,
    document: &Arc<Document>,
    pages: &[u32],
) -> Vec<PlannedPage> {
    let in_document_order = || {
        pages
            .iter()
            .map(|&index| PlannedPage {
                index,
                text_layer: None,
            })
            .collect()
    };
    if !matches!(document.content, Content::Pdf(_)) || pages.len() <= ctx.pipeline.pool.threads {
        return in_document_order();
    }
    let (doc, render, window) = (
        document.clone(),
        ctx.pipeline.render.clone(),
        pages.to_vec(),
    );
    let planned = ctx
        .pool
        .run(move || {
            use rayon::prelude::*;
            let Content::Pdf(pdf) = &doc.content else {
                return Vec::new();
            };
            window
                .par_iter()
                .map(|&index| (index, cost::pdf_page_work(pdf, index, &render)))
                .collect::<Vec<_>>()
        })
        .await;
    let mut planned = match planned {
        Ok(planned) if planned.len() == pages.len() => planned,
        _ => return in_document_order(),
    };
    // Stable: equal estimates keep document order.
    planned.sort_by_key(|(_, work)| {
        std::cmp::Reverse(match work {
            cost::PageWork::TextLayer(_) => u64::MAX,
            cost::PageWork::Ocr(cost) => *cost,
        })
    });
    planned
        .into_iter()
        .map(|(index, work)| PlannedPage {
            index,
            text_layer: match work {
                cost::PageWork::TextLayer(layer) => Some(PageInput::TextLayer {
                    text: layer.text,
                    invisible: layer.invisible,
                }),
                cost::PageWork::Ocr(_) => None,
            },
        })
        .collect()
}
