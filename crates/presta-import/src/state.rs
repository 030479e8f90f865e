//! The two shapes a Terraform state comes in, read into one list of resources: the JSON of
//! `terraform show -json` (`format_version` 1.x: `values.root_module`, nested
//! `child_modules`) and a raw `terraform.tfstate` (`version` 4: `resources[].instances[]`),
//! so that an import works without Terraform installed. Both hold the same attribute objects.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::ImportError;

/// One managed or data resource instance of the state.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Its full address, e.g. `module.shop.aws_efs_mount_target.this["subnet-1"]`.
    pub address: String,
    /// `managed` or `data`.
    pub mode: String,
    /// The resource type, e.g. `aws_lb`.
    pub ty: String,
    /// The module path (`module.shop`), empty at the root.
    pub module: String,
    pub values: Map<String, Value>,
    /// Top-level attributes Terraform marks as sensitive (never printed).
    pub sensitive: BTreeSet<String>,
}

/// A resource is its address: two with the same address are the same.
impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        self.address == other.address
    }
}

impl Resource {
    pub fn managed(&self) -> bool {
        self.mode == "managed"
    }

    pub fn get(&self, attr: &str) -> Option<&Value> {
        self.values.get(attr).filter(|v| !v.is_null())
    }

    pub fn str(&self, attr: &str) -> Option<&str> {
        self.get(attr)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn int(&self, attr: &str) -> Option<i64> {
        match self.get(attr)? {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn float(&self, attr: &str) -> Option<f64> {
        match self.get(attr)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn bool(&self, attr: &str) -> Option<bool> {
        self.get(attr).and_then(Value::as_bool)
    }

    /// A list of strings (a set or a list attribute).
    pub fn strings(&self, attr: &str) -> Vec<String> {
        self.get(attr)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first object of a nested block (`health_check { ... }` is a list of one).
    pub fn block(&self, attr: &str) -> Option<&Map<String, Value>> {
        self.get(attr)?.as_array()?.first()?.as_object()
    }

    /// Every object of a nested block.
    pub fn blocks(&self, attr: &str) -> Vec<&Map<String, Value>> {
        self.get(attr)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default()
    }
}

/// Which of the two formats a file was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    ShowJson,
    RawState,
}

impl Format {
    pub fn describe(self) -> &'static str {
        match self {
            Format::ShowJson => "`terraform show -json` output",
            Format::RawState => "raw terraform.tfstate (version 4)",
        }
    }
}

/// Reads either format; anything else is refused with what was expected.
pub fn parse(text: &str) -> Result<(Format, Vec<Resource>), ImportError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| ImportError::NotJson {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let Some(obj) = doc.as_object() else {
        return Err(ImportError::Format(
            "the file is JSON but not an object".into(),
        ));
    };
    if obj.contains_key("planned_values") || obj.contains_key("resource_changes") {
        return Err(ImportError::Format(
            "this is a plan (`terraform show -json tfplan`), not a state: run `terraform show -json` without a plan file".into(),
        ));
    }
    if let Some(v) = obj.get("format_version") {
        let v = v.as_str().unwrap_or_default();
        if !v.starts_with("1.") {
            return Err(ImportError::Format(format!(
                "`terraform show -json` format_version {v} is not supported (1.x is)"
            )));
        }
        let mut out = Vec::new();
        if let Some(root) = doc.pointer("/values/root_module") {
            walk_module(root, &mut out);
        }
        return Ok((Format::ShowJson, out));
    }
    if let Some(v) = obj.get("version") {
        if v.as_i64() != Some(4) {
            return Err(ImportError::Format(format!(
                "terraform.tfstate version {v} is not supported (version 4 is, written by Terraform 0.12 and later): run `terraform show -json > state.json` with your Terraform and import that"
            )));
        }
        let mut out = Vec::new();
        for r in obj
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            raw_resource(r, &mut out);
        }
        return Ok((Format::RawState, out));
    }
    Err(ImportError::Format(
        "neither `terraform show -json` output (no `format_version`) nor a terraform.tfstate (no `version`)".into(),
    ))
}

fn walk_module(m: &Value, out: &mut Vec<Resource>) {
    for r in m
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let address = r["address"].as_str().unwrap_or_default().to_string();
        let module = module_of(&address);
        out.push(Resource {
            mode: r["mode"].as_str().unwrap_or_default().to_string(),
            ty: r["type"].as_str().unwrap_or_default().to_string(),
            module,
            values: r["values"].as_object().cloned().unwrap_or_default(),
            sensitive: r["sensitive_values"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(_, v)| **v == Value::Bool(true))
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default(),
            address,
        });
    }
    for c in m
        .get("child_modules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        walk_module(c, out);
    }
}

/// `module.a.module.b` of `module.a.module.b.aws_lb.x[0]`.
fn module_of(address: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let mut rest = address;
    while let Some(after) = rest.strip_prefix("module.") {
        let end = after.find(['.', '[']).unwrap_or(after.len());
        let mut name_end = end;
        // A module instance key: module.a["x"] or module.a[0].
        if after[end..].starts_with('[')
            && let Some(close) = after[end..].find("].")
        {
            name_end = end + close + 1;
        }
        parts.push(&rest[..7 + name_end]);
        rest = after[name_end..].trim_start_matches('.');
    }
    parts.join(".")
}

fn raw_resource(r: &Value, out: &mut Vec<Resource>) {
    let module = r["module"].as_str().unwrap_or_default().to_string();
    let mode = r["mode"].as_str().unwrap_or_default().to_string();
    let ty = r["type"].as_str().unwrap_or_default().to_string();
    let name = r["name"].as_str().unwrap_or_default();
    let base = {
        let local = if mode == "data" {
            format!("data.{ty}.{name}")
        } else {
            format!("{ty}.{name}")
        };
        if module.is_empty() {
            local
        } else {
            format!("{module}.{local}")
        }
    };
    for inst in r["instances"].as_array().into_iter().flatten() {
        let address = match &inst["index_key"] {
            Value::Null => base.clone(),
            Value::Number(n) => format!("{base}[{n}]"),
            Value::String(s) => format!("{base}[{}]", Value::String(s.clone())),
            other => format!("{base}[{other}]"),
        };
        let sensitive = inst["sensitive_attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|path| {
                // Terraform 1.x: a list of paths, each a list of steps.
                let first = path.as_array()?.first()?;
                Some(first["value"].as_str()?.to_string())
            })
            .collect();
        out.push(Resource {
            address,
            mode: mode.clone(),
            ty: ty.clone(),
            module: module.clone(),
            values: inst["attributes"].as_object().cloned().unwrap_or_default(),
            sensitive,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_with_instance_keys() {
        assert_eq!(module_of("aws_lb.x"), "");
        assert_eq!(module_of("module.shop.aws_lb.x"), "module.shop");
        assert_eq!(
            module_of("module.a.module.b.aws_lb.x[0]"),
            "module.a.module.b"
        );
        assert_eq!(
            module_of("module.shop[\"eu\"].aws_lb.x"),
            "module.shop[\"eu\"]"
        );
    }

    #[test]
    fn both_formats_give_the_same_addresses() {
        let show = r#"{"format_version":"1.0","values":{"root_module":{"child_modules":[{"address":"module.m","resources":[
            {"address":"module.m.aws_efs_mount_target.t[\"subnet-1\"]","mode":"managed","type":"aws_efs_mount_target","name":"t","index":"subnet-1","values":{"id":"fsmt-1"},"sensitive_values":{}}]}]}}}"#;
        let raw = r#"{"version":4,"resources":[{"module":"module.m","mode":"managed","type":"aws_efs_mount_target","name":"t",
            "instances":[{"index_key":"subnet-1","attributes":{"id":"fsmt-1"},"sensitive_attributes":[]}]}]}"#;
        let (f1, a) = parse(show).unwrap();
        let (f2, b) = parse(raw).unwrap();
        assert_eq!((f1, f2), (Format::ShowJson, Format::RawState));
        assert_eq!(a[0].address, b[0].address);
        assert_eq!(
            a[0].address,
            "module.m.aws_efs_mount_target.t[\"subnet-1\"]"
        );
        assert_eq!(a[0].module, "module.m");
        assert_eq!(b[0].str("id"), Some("fsmt-1"));
    }

    #[test]
    fn wrong_formats_are_named() {
        assert!(matches!(
            parse("not json"),
            Err(ImportError::NotJson { .. })
        ));
        let e = parse(r#"{"version":3,"modules":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 3"), "{e}");
        let e = parse(r#"{"format_version":"1.2","planned_values":{}}"#).unwrap_err();
        assert!(e.to_string().contains("plan"), "{e}");
        assert!(parse(r#"{"format_version":"1.2","values":{}}"#).is_ok());
        let e = parse(r#"{"resource_changes":[]}"#).unwrap_err().to_string();
        assert!(e.contains("plan"), "{e}");
        let e = parse(r#"{"hello":1}"#).unwrap_err().to_string();
        assert!(e.contains("neither"), "{e}");
    }
}
