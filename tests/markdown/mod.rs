//! Markdown as GitHub renders it, for the tests that tie the docs to the
//! code: the pages, headings' anchors outside fenced code blocks, and the
//! documents of the YAML blocks.

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use serde_json::Value;

/// The pages of docs/, sorted.
pub fn docs_pages() -> Vec<PathBuf> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&docs)
        .expect("docs/")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages
}

/// Every document of a page's YAML blocks that parses: its text and value.
pub fn yaml_documents(page: &str) -> Vec<(&str, Value)> {
    page.split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .flat_map(|block| block.split("\n---\n"))
        .filter_map(|doc| Some((doc, serde_saphyr::from_str::<Value>(doc).ok()?)))
        .collect()
}

/// The DeploymentChannel and PhoneConfiguration documents of a page's YAML blocks.
pub fn yaml_manifests(page: &str) -> Vec<Value> {
    yaml_documents(page)
        .into_iter()
        .map(|(_, doc)| doc)
        .filter(|doc| {
            matches!(
                doc["kind"].as_str(),
                Some("DeploymentChannel" | "PhoneConfiguration")
            )
        })
        .collect()
}

/// The lines of a page outside fenced code blocks.
pub fn prose(page: &str) -> Vec<&str> {
    let mut fenced = false;
    page.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (a repeated heading gets `-1`, `-2`, ...).
pub fn anchors(page: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    prose(page)
        .into_iter()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            let base = anchor(l.trim_start_matches('#'));
            let count = seen.entry(base.clone()).or_default();
            let name = if *count == 0 {
                base.clone()
            } else {
                format!("{base}-{count}")
            };
            *count += 1;
            name
        })
        .collect()
}
