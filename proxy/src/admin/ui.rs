//! The live dashboard on the admin port: `GET /ui` (one HTML page with its script and styles,
//! embedded in the binary; no build step, nothing fetched from elsewhere) and the time series it
//! draws, `GET /rollouts/{name}/history`.
//!
//! The page polls `GET /rollouts` and the history once a second and draws its charts as inline
//! SVG. Its promote, pause, resume and abort buttons call the same admin API as
//! `augur rollout` (`POST /rollouts/{name}/{command}`), sending `Authorization: Bearer <token>`
//! when the user typed one (needed from beyond loopback when `--admin-token` is set).

use http::StatusCode;

use super::{AdminState, Reply};

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// Whether `GET path` is the dashboard's (the page, its assets, or a rollout's history).
pub(super) fn handles(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/") || history_name(path).is_some()
}

/// Answers a `GET` on one of the paths [`handles`] accepts.
pub(super) fn get(s: &AdminState, path: &str) -> Reply {
    if let Some(name) = history_name(path) {
        return match s.rollouts.history(name) {
            Some(history) => Reply::json(&history),
            None => Reply::text(
                StatusCode::NOT_FOUND,
                format!("no rollout named {name:?}; `GET /rollouts` lists them\n"),
            ),
        };
    }
    let (content_type, body) = match path {
        "/ui" | "/ui/" | "/ui/index.html" => ("text/html; charset=UTF-8", INDEX_HTML),
        "/ui/app.js" => ("text/javascript; charset=UTF-8", APP_JS),
        "/ui/style.css" => ("text/css; charset=UTF-8", STYLE_CSS),
        _ => return Reply::not_found(),
    };
    Reply::new(StatusCode::OK, content_type, body.as_bytes().to_vec())
}

/// `/rollouts/{name}/history` → `name` (which may be `namespace/name`).
fn history_name(path: &str) -> Option<&str> {
    path.strip_prefix("/rollouts/")?
        .strip_suffix("/history")
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(handles("/ui"));
        assert!(handles("/ui/app.js"));
        assert_eq!(
            history_name("/rollouts/default/pneumonia/history"),
            Some("default/pneumonia")
        );
        assert_eq!(
            history_name("/rollouts/pneumonia/history"),
            Some("pneumonia")
        );
        assert_eq!(history_name("/rollouts//history"), None);
        assert!(!handles("/rollouts/pneumonia/promote"));
        assert!(!handles("/uix"));
    }

    #[test]
    fn the_page_loads_its_assets_from_the_admin_port_only() {
        assert!(INDEX_HTML.contains("/ui/app.js") && INDEX_HTML.contains("/ui/style.css"));
        for asset in [INDEX_HTML, APP_JS, STYLE_CSS] {
            // the only absolute URL is the SVG namespace, which is a name, never fetched
            let rest = asset.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(
                !rest.contains("http://") && !rest.contains("https://") && !rest.contains("//cdn"),
                "the page must work offline: no external resources"
            );
        }
    }
}
