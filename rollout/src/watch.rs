//! Watching policy files for changes, as editors and Kubernetes ConfigMap updates make them.
//!
//! Directories are watched recursively and single files through their parent directory,
//! because editors and ConfigMap updates replace files by rename (`..data` symlink swaps).
//! Callers debounce the events and compare hashes, so that a burst of writes makes one reload
//! and an event that changed nothing swaps nothing.

use std::path::{Path, PathBuf};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Sends `()` on `tx` whenever something under `paths` changes; the watch lasts as long as
/// the returned watcher.
pub fn watch(
    paths: &[PathBuf],
    tx: mpsc::UnboundedSender<()>,
) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })?;
    for path in paths {
        let (target, mode) = watch_target(path);
        watcher.watch(&target, mode)?;
    }
    Ok(watcher)
}

/// A directory is watched recursively; a file through its parent directory.
fn watch_target(path: &Path) -> (PathBuf, RecursiveMode) {
    if path.is_dir() {
        return (path.to_path_buf(), RecursiveMode::Recursive);
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    (parent, RecursiveMode::NonRecursive)
}
