//! The reference documents say what the code does: every metric the daemon registers is in
//! `docs/metrics.md` (and nothing else is), every route of the API is in `docs/openapi.yaml`.

use crate::common;

use std::collections::BTreeSet;

use common::root;

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The string literals of `text` that start with `prefix`.
fn literals(text: &str, prefix: &str) -> BTreeSet<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn docs_metrics_md_lists_exactly_the_registered_metrics() {
    let module = read("crates/presta-controller/src/metrics/mod.rs");
    let code = format!(
        "{}{}",
        module.split("#[cfg(test)]").next().unwrap(),
        read("crates/presta-controller/src/metrics/defs.rs")
    );
    let code = code.as_str();
    let registered: BTreeSet<String> = literals(code, "presta_")
        .into_iter()
        .filter(|s| s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert!(registered.len() >= 14, "{registered:?}");
    let doc = read("docs/metrics.md");
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("presta_"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        registered, documented,
        "docs/metrics.md and metrics.rs differ"
    );
}

#[test]
fn docs_openapi_yaml_documents_every_route() {
    let code = read("crates/presta-http/src/lib.rs");
    let routes: BTreeSet<String> = code
        .split(".route(\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect();
    assert!(routes.len() >= 10, "{routes:?}");
    let spec: serde_json::Value = serde_yaml::from_str(&read("docs/openapi.yaml")).unwrap();
    assert_eq!(spec["openapi"], "3.0.3");
    let paths: BTreeSet<String> = spec["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(routes, paths, "docs/openapi.yaml and the router differ");
    // Every $ref points at something defined.
    let text = read("docs/openapi.yaml");
    for r in text.split("$ref: \"#/").skip(1) {
        let path = r.split('"').next().unwrap();
        let mut node = &spec;
        for part in path.split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "dangling $ref #/{path}");
    }
}
