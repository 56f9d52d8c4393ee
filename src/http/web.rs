//! The web page for people: `GET /` and its scripts and style under `/web/`, embedded in the
//! binary at build time (plain HTML, CSS and JavaScript modules: no build step, no CDN, it
//! works on a machine without internet). The page itself needs no key; it asks for one and
//! sends it with every API call, as any client does.

use warp::reply::Response;
use warp::{Filter, Reply};

use super::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The page (`index.html`, served at `/`) and every file it loads.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("web/index.html"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("web/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("web/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("web/api.js"),
    },
    Asset {
        name: "submit.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("web/submit.js"),
    },
    Asset {
        name: "jobs.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("web/jobs.js"),
    },
    Asset {
        name: "job.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("web/job.js"),
    },
];

/// Scripts, styles and connections from this daemon only; images also from the `blob:` URLs
/// the page makes of previews it fetched with the key.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

fn serve(asset: &Asset) -> Response {
    let mut response =
        warp::reply::with_header(asset.body, "content-type", asset.content_type).into_response();
    let headers = response.headers_mut();
    // Revalidated on every load: a new daemon version serves new files under the same names.
    headers.insert(
        warp::http::header::CACHE_CONTROL,
        warp::http::HeaderValue::from_static("no-cache"),
    );
    headers.insert(
        warp::http::header::CONTENT_SECURITY_POLICY,
        warp::http::HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        warp::http::header::X_CONTENT_TYPE_OPTIONS,
        warp::http::HeaderValue::from_static("nosniff"),
    );
    response
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// `GET /`: the page.
pub fn page() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path::end()
        .and(warp::get())
        .map(|| serve(find("index.html").expect("the page is embedded")))
}

/// `GET /web/{asset}`: a file the page loads; 404 `not_found` for any other name.
pub fn asset() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("web" / String)
        .and(warp::get())
        .map(|name: String| match find(&name) {
            Some(asset) => serve(asset),
            None => ApiError::NotFound.into_response(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_is_loaded_by_the_page_and_the_page_loads_only_embedded_files() {
        let html = find("index.html").unwrap().body;
        assert!(html.contains("/web/app.js"), "{html}");
        for asset in ASSETS.iter().filter(|a| a.name != "index.html") {
            let loaded = ASSETS.iter().any(|a| {
                a.body.contains(&format!("/web/{}", asset.name))
                    || a.body.contains(&format!("./{}", asset.name))
            });
            assert!(loaded, "{} is embedded but nothing loads it", asset.name);
        }
        // Modules import each other as `./name.js`: each is embedded.
        for asset in ASSETS {
            for (i, _) in asset.body.match_indices("from './") {
                let rest = &asset.body[i + "from './".len()..];
                let name = &rest[..rest.find('\'').unwrap()];
                assert!(find(name).is_some(), "{} imports {name}", asset.name);
            }
        }
        assert!(find("nothing.js").is_none());
    }
}
