//! The documentation against the code: the metrics table of
//! docs/operations.md is exactly what the operator registers, every
//! DeploymentChannel and PhoneConfiguration the pages show passes
//! `validate`, every relative link and anchor between the pages resolves,
//! and every page a message or manifest in the source points at exists,
//! with the section it names.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use deploymentchannel_operator::operator::metrics::Metrics;
use serde_json::Value;

mod markdown;
use markdown::{anchor, anchors, prose, yaml_manifests};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The Markdown pages: README.md, CONTRIBUTING.md, CHANGELOG.md and docs/*.md.
fn pages() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut pages: Vec<PathBuf> = ["README.md", "CONTRIBUTING.md", "CHANGELOG.md"]
        .iter()
        .map(|p| root.join(p))
        .collect();
    let docs = markdown::docs_pages();
    assert!(docs.len() >= 10, "{docs:?}");
    pages.extend(docs);
    pages
}

/// The targets of a line's Markdown links: `[text](target)`.
fn link_targets(line: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        match after.find(')') {
            Some(end) => {
                targets.push(&after[..end]);
                rest = &after[end..];
            }
            None => break,
        }
    }
    targets
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(anchor(" What `dev` does first"), "what-dev-does-first");
    assert_eq!(
        anchor("Why not kube-runtime's Controller"),
        "why-not-kube-runtimes-controller"
    );
    assert_eq!(anchor("What deploy/ installs"), "what-deploy-installs");
    let page = "# A\n```sh\n# not a heading\n```\n## A\n";
    assert_eq!(anchors(page), BTreeSet::from(["a".into(), "a-1".into()]));
    assert_eq!(
        link_targets("see [x](a.md#b) and [y](#c), not (d)"),
        ["a.md#b", "#c"]
    );
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = read(&page);
        let dir = page.parent().unwrap();
        for line in prose(&text) {
            for target in link_targets(line) {
                if target.starts_with("https://") || target.starts_with("http://") {
                    continue;
                }
                let (path, fragment) = match target.split_once('#') {
                    Some((path, fragment)) => (path, Some(fragment)),
                    None => (target, None),
                };
                let file = if path.is_empty() {
                    page.clone()
                } else {
                    dir.join(path)
                };
                if !file.exists() {
                    broken.push(format!("{}: {target}: no such file", page.display()));
                    continue;
                }
                if let Some(fragment) = fragment
                    && file.extension().is_some_and(|e| e == "md")
                    && !anchors(&read(&file)).contains(fragment)
                {
                    broken.push(format!("{}: {target}: no such heading", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Files outside the pages that point readers at a page: `docs/PAGE.md`,
/// optionally followed by `, "Heading"` (messages, manifests, CI).
fn files_that_point_at_pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path
                .extension()
                .is_some_and(|e| e == "rs" || e == "yaml" || e == "json")
            {
                out.push(path);
            }
        }
    }
    let root = Path::new(ROOT);
    let mut files = Vec::new();
    for dir in ["src", "deploy", "examples", "tests"] {
        walk(&root.join(dir), &mut files);
    }
    files.extend([".ci/run", "Makefile", "Dockerfile"].map(|f| root.join(f)));
    files
}

#[test]
fn pages_named_in_the_source_exist_with_their_sections() {
    let page_name = regex::Regex::new(
        r#"((?:docs/[a-z0-9-]+|README|CONTRIBUTING|CHANGELOG)\.md)(?:, \\?"([^"\\]+)\\?")?"#,
    )
    .unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for file in files_that_point_at_pages() {
        let text = read(&file);
        for found in page_name.captures_iter(&text) {
            named += 1;
            let page = Path::new(ROOT).join(&found[1]);
            if !page.is_file() {
                missing.push(format!("{}: {}", file.display(), &found[1]));
                continue;
            }
            if let Some(section) = found.get(2)
                && !anchors(&read(&page)).contains(&anchor(section.as_str()))
            {
                missing.push(format!(
                    "{}: {}, {:?}: no such heading",
                    file.display(),
                    &found[1],
                    section.as_str()
                ));
            }
        }
    }
    assert!(named >= 5, "only {named} references to pages found");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn no_message_points_at_readme_sections_that_moved() {
    // Messages and manifests name the page of docs/ that holds a topic;
    // README.md is the front page and keeps no manual sections.
    let section = regex::Regex::new(r#"README\.md(#|, \\?")"#).unwrap();
    let stale: Vec<String> = files_that_point_at_pages()
        .into_iter()
        .filter(|f| !f.ends_with("tests/docs.rs"))
        .filter(|f| section.is_match(&read(f)))
        .map(|f| f.display().to_string())
        .collect();
    assert!(stale.is_empty(), "{stale:?}");
}

/// The rows of the metrics table of docs/operations.md: name → type.
fn documented_metrics() -> BTreeMap<String, String> {
    let page = read(&Path::new(ROOT).join("docs/operations.md"));
    let mut metrics = BTreeMap::new();
    for line in page
        .lines()
        .filter(|l| l.starts_with("| `deploymentchannel_operator_"))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        assert!(
            metrics.insert(name.clone(), cells[2].to_string()).is_none(),
            "{name} twice"
        );
    }
    metrics
}

#[test]
fn the_metrics_table_is_what_the_operator_registers() {
    let series: BTreeSet<String> = Metrics::default().series_names().iter().cloned().collect();
    // A histogram is documented once, by its base name.
    let mut registered = BTreeMap::new();
    for name in &series {
        if let Some(base) = name.strip_suffix("_bucket") {
            registered.insert(base.to_string(), "histogram");
        } else if ["_sum", "_count"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|b| series.contains(&format!("{b}_bucket")))
        }) {
            continue;
        } else if name.ends_with("_total") {
            registered.insert(name.clone(), "counter");
        } else {
            registered.insert(name.clone(), "gauge");
        }
    }
    assert!(registered.len() >= 17, "{registered:?}");
    let documented = documented_metrics();
    assert_eq!(
        documented.keys().collect::<BTreeSet<_>>(),
        registered.keys().collect::<BTreeSet<_>>(),
        "docs/operations.md lists other metrics than the operator registers"
    );
    for (name, kind) in registered {
        assert_eq!(documented[&name], kind, "{name}'s type");
    }
}

#[test]
fn every_documented_manifest_is_valid() {
    // The same object may be shown on several pages, always the same.
    let mut objects: BTreeMap<(String, String), (Value, String)> = BTreeMap::new();
    for page in pages() {
        for manifest in yaml_manifests(&read(&page)) {
            let key = (
                manifest["kind"].as_str().unwrap().to_string(),
                manifest["metadata"]["name"]
                    .as_str()
                    .expect("a name")
                    .to_string(),
            );
            match objects.get(&key) {
                Some((shown, on)) => assert_eq!(
                    shown,
                    &manifest,
                    "{key:?} differs between {on} and {}",
                    page.display()
                ),
                None => {
                    objects.insert(key, (manifest, page.display().to_string()));
                }
            }
        }
    }
    let kinds: BTreeSet<&str> = objects
        .values()
        .filter_map(|(m, _)| m["spec"]["deploymentType"].as_str())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["CALLS", "MOBILE", "SMS", "WEB"]));

    // All of them at once, as one namespace would hold them: references
    // between them resolve and no two claim the same identifier.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("documented.yaml");
    let documents: Vec<String> = objects
        .values()
        .map(|(m, _)| serde_json::to_string(m).unwrap())
        .collect();
    std::fs::write(&file, documents.join("\n---\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_deploymentchannel-operator"))
        .arg("validate")
        .arg(&file)
        .output()
        .expect("validate runs");
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "documented manifests fail validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "{} objects checked, 0 other documents skipped, 0 problems",
            objects.len()
        )
    );
}
