//! Puts Tesseract's hOCR and ALTO fragments of a page read at a working scale back into the
//! source page's coordinates, so that every output (word boxes, hOCR, ALTO, the searchable
//! PDF) describes the page the user sent, whatever scale preprocessing chose to read it at.
//!
//! Only the attributes that hold pixel measures are rewritten: in hOCR the `bbox`,
//! `baseline` offset, `x_size`, `x_descenders` and `x_ascenders` properties of `title`
//! attributes (and `scan_res`, the resolution); in ALTO the `HPOS`, `VPOS`, `WIDTH` and
//! `HEIGHT` attributes. Everything else is copied as it is.

/// The hOCR fragment of a page read at `scale` times its source size, in the source's
/// coordinates; `source_dpi` is the source's resolution.
pub fn hocr_to_source(hocr: &str, scale: f32, source_dpi: u32) -> String {
    let mut out = String::with_capacity(hocr.len());
    let mut rest = hocr;
    // Tesseract writes `title='...'` (single quotes) and, in some versions, double quotes.
    while let Some(at) = rest.find("title=") {
        let value_start = at + "title=".len();
        let Some(quote) = rest[value_start..]
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
        else {
            out.push_str(&rest[..value_start]);
            rest = &rest[value_start..];
            continue;
        };
        let body_start = value_start + 1;
        let Some(len) = rest[body_start..].find(quote) else {
            break;
        };
        out.push_str(&rest[..body_start]);
        out.push_str(&hocr_properties(
            &rest[body_start..body_start + len],
            scale,
            source_dpi,
        ));
        rest = &rest[body_start + len..];
    }
    out.push_str(rest);
    out
}

/// One `title` attribute's properties (`name values; name values`), pixel measures scaled.
fn hocr_properties(title: &str, scale: f32, source_dpi: u32) -> String {
    title
        .split(';')
        .map(|property| {
            let trimmed = property.trim_start();
            let lead = &property[..property.len() - trimmed.len()];
            let mut parts = trimmed.split_whitespace();
            let name = parts.next().unwrap_or("");
            let values: Vec<&str> = parts.collect();
            let scaled = |skip: usize| -> String {
                let vals: Vec<String> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v.parse::<f64>() {
                        Ok(n) if i >= skip => format_number(n / scale as f64, v),
                        _ => v.to_string(),
                    })
                    .collect();
                format!("{lead}{name} {}", vals.join(" "))
            };
            match name {
                "bbox" | "x_size" | "x_descenders" | "x_ascenders" => scaled(0),
                // `baseline slope offset`: the slope has no unit.
                "baseline" => scaled(1),
                "scan_res" => format!("{lead}scan_res {source_dpi} {source_dpi}"),
                _ => property.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// The ALTO fragment of a page read at `scale` times its source size, in the source's
/// coordinates.
pub fn alto_to_source(alto: &str, scale: f32) -> String {
    const MEASURES: [&str; 4] = ["HPOS=\"", "VPOS=\"", "WIDTH=\"", "HEIGHT=\""];
    let mut out = String::with_capacity(alto.len());
    let mut rest = alto;
    loop {
        // The earliest measure attribute left, preceded by a space (so `WIDTH` is not found
        // inside another name).
        let next = MEASURES
            .iter()
            .filter_map(|m| {
                rest.match_indices(m)
                    .find(|(i, _)| rest[..*i].ends_with(' '))
                    .map(|(i, _)| (i, m.len()))
            })
            .min();
        let Some((at, len)) = next else { break };
        let value_start = at + len;
        let Some(value_len) = rest[value_start..].find('"') else {
            break;
        };
        let value = &rest[value_start..value_start + value_len];
        out.push_str(&rest[..value_start]);
        match value.parse::<f64>() {
            Ok(n) => out.push_str(&format_number(n / scale as f64, value)),
            Err(_) => out.push_str(value),
        }
        rest = &rest[value_start + value_len..];
    }
    out.push_str(rest);
    out
}

/// `n` written as the original was: a whole number if it was one, else with two decimals.
fn format_number(n: f64, original: &str) -> String {
    if original.contains('.') {
        format!("{n:.2}")
    } else {
        format!("{}", n.round() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hocr_measures_are_scaled_back_and_other_properties_kept() {
        let hocr = "<div class='ocr_page' id='page_1' title='image \"\"; bbox 0 0 1000 2000; ppageno 0; scan_res 600 600'>\n\
             <span class='ocr_line' id='line_1_1' title=\"bbox 100 200 900 260; baseline 0.002 -10; x_size 40; x_descenders 10; x_ascenders 12\">\n\
             <span class='ocrx_word' id='word_1_1' title='bbox 100 200 300 260; x_wconf 96'>Hello</span>";
        let back = hocr_to_source(hocr, 2.0, 300);
        assert!(
            back.contains("title='image \"\"; bbox 0 0 500 1000; ppageno 0; scan_res 300 300'"),
            "{back}"
        );
        assert!(
            back.contains(
                "bbox 50 100 450 130; baseline 0.002 -5; x_size 20; x_descenders 5; x_ascenders 6"
            ),
            "{back}"
        );
        assert!(
            back.contains("title='bbox 50 100 150 130; x_wconf 96'>Hello</span>"),
            "{back}"
        );
    }

    #[test]
    fn alto_measures_are_scaled_back() {
        let alto = "<Page WIDTH=\"1000\" HEIGHT=\"2000\" PHYSICAL_IMG_NR=\"0\" ID=\"page_0\">\
             <String ID=\"string_0\" HPOS=\"100\" VPOS=\"200\" WIDTH=\"300\" HEIGHT=\"60\" WC=\"0.96\" CONTENT=\"WIDTH=&quot;7&quot;\"/>\
             <SP WIDTH=\"21\" VPOS=\"200\" HPOS=\"400\"/>";
        let back = alto_to_source(alto, 2.0);
        assert_eq!(
            back,
            "<Page WIDTH=\"500\" HEIGHT=\"1000\" PHYSICAL_IMG_NR=\"0\" ID=\"page_0\">\
             <String ID=\"string_0\" HPOS=\"50\" VPOS=\"100\" WIDTH=\"150\" HEIGHT=\"30\" WC=\"0.96\" CONTENT=\"WIDTH=&quot;7&quot;\"/>\
             <SP WIDTH=\"11\" VPOS=\"100\" HPOS=\"200\"/>"
        );
    }
}
