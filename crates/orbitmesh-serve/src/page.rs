//! The web page, served from the binary: its HTML, script and style, and the vendored 3D viewer
//! (assets/vendor/README.md), so it works offline.

use axum::extract::Path;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

const INDEX: &str = include_str!("../assets/index.html");
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript",
        include_str!("../assets/app.js"),
    ),
    ("style.css", "text/css", include_str!("../assets/style.css")),
    (
        "model-viewer.min.js",
        "text/javascript",
        include_str!("../assets/vendor/model-viewer.min.js"),
    ),
];

pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}

pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => {
            ([(header::CONTENT_TYPE, *content_type)], *body).into_response()
        }
        None => crate::api::ApiError::not_found(format!("no asset `{}`", name.escape_default()))
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_assets_the_binary_serves() {
        for src in INDEX.split("assets/").skip(1) {
            let name = src.split('"').next().unwrap();
            assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{name}");
        }
        // Nothing is fetched from elsewhere.
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
    }
}
